//! The font charts write their text with. Plotters' `ab_glyph` text needs font bytes at run
//! time; psy ships none, so it looks for a common system sans-serif (or `PSY_FONT`). Without
//! one, charts are still drawn, only without text, and the caller says so.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::style::FontStyle;

/// Environment variable naming a TrueType/OpenType font file to use instead of the system ones.
pub const FONT_ENV: &str = "PSY_FONT";

/// The family name charts ask plotters for; [`chart_font`] registers the found font under it.
pub const FAMILY: &str = "sans-serif";

/// System font files tried in order (Debian/Ubuntu, Arch/Fedora, macOS, Windows).
pub const SYSTEM_FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Whether charts can carry text, and from which file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartFont {
    /// Registered with plotters under [`FAMILY`].
    Found(PathBuf),
    /// No usable font: charts are drawn without text.
    Missing,
}

impl ChartFont {
    /// True when text can be drawn.
    pub fn has_text(&self) -> bool {
        matches!(self, ChartFont::Found(_))
    }

    /// One line for a report: which font, or why the charts have no text.
    pub fn describe(&self) -> String {
        match self {
            ChartFont::Found(p) => format!("text drawn with {}", p.display()),
            ChartFont::Missing => format!(
                "no font found (tried ${FONT_ENV} and {} system paths): charts are drawn without text",
                SYSTEM_FONTS.len()
            ),
        }
    }
}

/// The first readable file among `candidates`, with its bytes.
pub fn find_font_in<P: AsRef<Path>>(candidates: &[P]) -> Option<(PathBuf, Vec<u8>)> {
    candidates.iter().find_map(|p| {
        let p = p.as_ref();
        std::fs::read(p)
            .ok()
            .filter(|b| !b.is_empty())
            .map(|b| (p.to_path_buf(), b))
    })
}

/// `$PSY_FONT` (when set) followed by [`SYSTEM_FONTS`].
pub fn font_candidates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::env::var_os(FONT_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .into_iter()
        .collect();
    out.extend(SYSTEM_FONTS.iter().map(PathBuf::from));
    out
}

/// Registers `bytes` with plotters under [`FAMILY`]. The bytes must live for the process
/// (plotters keeps a `'static` reference), so callers go through [`chart_font`], which does
/// this at most once.
fn register(path: PathBuf, bytes: Vec<u8>) -> ChartFont {
    let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    match plotters::style::register_font(FAMILY, FontStyle::Normal, leaked) {
        Ok(()) => ChartFont::Found(path),
        Err(_) => {
            tracing::warn!(font = %path.display(), "font file is not a usable TrueType/OpenType font");
            ChartFont::Missing
        }
    }
}

/// Finds and registers the chart font once per process (later calls return the first answer):
/// the first candidate that reads and parses as a font wins.
pub fn chart_font() -> ChartFont {
    static FONT: OnceLock<ChartFont> = OnceLock::new();
    FONT.get_or_init(|| {
        font_candidates()
            .into_iter()
            .filter_map(|p| find_font_in(&[p]))
            .map(|(path, bytes)| register(path, bytes))
            .find(ChartFont::has_text)
            .unwrap_or(ChartFont::Missing)
    })
    .clone()
}
