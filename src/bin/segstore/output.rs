//! What commands print: their report on stdout (text, or one JSON value under `--json`),
//! and progress on stderr for people only.

use segstore::{Progress, ProgressFn};

/// Prints a command's report: `value` under `--json`, `text` otherwise.
pub fn report(json: bool, value: serde_json::Value, text: &str) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

/// A spinner with the elapsed time on stderr, for long operations the library reports no
/// progress of; hidden for JSON output or when stderr is not a terminal.
pub fn progress(json: bool, message: &str) -> indicatif::ProgressBar {
    if !show_progress(json) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Progress on stderr of a library operation that reports it ([`ProgressFn`]): a spinner
/// until the operation knows its bytes, then bytes, rate and ETA as [`bytes_bar`] (bytes
/// and rate alone while the total is unknown, as for an archive on stdin). Hidden like
/// [`progress`].
pub fn operation_progress(json: bool, message: &str) -> (indicatif::ProgressBar, ProgressFn) {
    let bar = progress(json, message);
    let shown = bar.clone();
    let callback = ProgressFn::new(move |p: &Progress| {
        if p.bytes_total > 0 {
            if shown.length() != Some(p.bytes_total) {
                if shown.length().is_none() {
                    shown.set_style(bytes_style());
                }
                shown.set_length(p.bytes_total);
            }
        } else if p.bytes_done > 0 && shown.position() == 0 {
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} {msg} {bytes} {bytes_per_sec} ({elapsed})",
            ) {
                shown.set_style(style);
            }
        }
        shown.set_position(p.bytes_done);
    });
    (bar, callback)
}

fn bytes_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(
        "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

/// A byte progress bar on stderr for a transfer of `len` bytes, hidden like [`progress`]:
/// bytes, rate and ETA, the bar taking what the terminal's width leaves (so the line fits
/// an 80-column terminal).
pub fn bytes_bar(json: bool, len: u64, message: &str) -> indicatif::ProgressBar {
    if !show_progress(json) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(bytes_style());
    bar.set_message(message.to_owned());
    bar
}

/// Progress goes to stderr only for people: not with `--json`, not when stderr is piped.
fn show_progress(json: bool) -> bool {
    use std::io::IsTerminal;
    !json && std::io::stderr().is_terminal()
}
