//! Number formatting shared by the writers: the same value always prints the same text
//! (negative zero prints as zero), so the same report writes byte-identical files.

/// `x` with `digits` decimals (`-0.000` prints as `0.000`).
pub fn fixed(x: f64, digits: usize) -> String {
    let s = format!("{x:.digits$}");
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// Like [`fixed`] with an explicit `+` on positive values (a difference reads with its sign).
pub fn signed(x: f64, digits: usize) -> String {
    let s = fixed(x, digits);
    if s.starts_with('-') || s.chars().all(|c| c == '0' || c == '.') {
        s
    } else {
        format!("+{s}")
    }
}

/// Shortest text that reads back to the same `f64` (Rust's `Display`), for machine files.
pub fn exact(x: f64) -> String {
    if x == 0.0 {
        "0".to_string()
    } else {
        format!("{x}")
    }
}
