//! The photo pipeline's isolated worker on its own (the `latchkey` binary
//! runs the same as its hidden `media-worker` subcommand): for tests of the
//! broker, whose test binaries cannot run `latchkey` itself.

fn main() {
    std::process::exit(latchkey_media::worker_main());
}
