//! Progress bars for hashing and transfers, drawn only when stderr is a
//! terminal so that scripts and CI logs get clean output.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A byte bar of `len` bytes (a spinner when the length is unknown), or a
/// hidden one that costs nothing when stderr is not a terminal.
pub fn bytes_bar(len: Option<u64>, label: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(len) => ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template(
                    "{msg:24!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .expect("static template")
                .progress_chars("=> "),
            ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{msg:24!} {spinner} {bytes} {bytes_per_sec}")
                .expect("static template"),
        ),
    };
    bar.set_message(label.to_owned());
    bar
}
