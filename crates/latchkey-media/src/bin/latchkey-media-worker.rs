//! The media worker on its own, for this crate's isolation tests (the
//! broker runs the same code as `latchkey media-worker`).

fn main() {
    std::process::exit(latchkey_media::worker_main());
}
