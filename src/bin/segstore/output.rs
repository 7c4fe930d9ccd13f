//! What commands print: their report on stdout (text, or one JSON value under `--json`),
//! and progress on stderr for people only.

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

/// A byte progress bar on stderr for a transfer of `len` bytes, hidden like [`progress`]:
/// bytes, rate and ETA, the bar taking what the terminal's width leaves (so the line fits
/// an 80-column terminal).
pub fn bytes_bar(json: bool, len: u64, message: &str) -> indicatif::ProgressBar {
    if !show_progress(json) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(message.to_owned());
    bar
}

/// Progress goes to stderr only for people: not with `--json`, not when stderr is piped.
fn show_progress(json: bool) -> bool {
    use std::io::IsTerminal;
    !json && std::io::stderr().is_terminal()
}
