//! Variant colours shared by the charts (the "tab10" palette: distinct, print-safe), so a
//! variant has the same colour on the radar and on the deltas chart.

use plotters::style::RGBColor;

const TAB10: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Colour of the variant at position `index` in the report.
pub fn variant_color(index: usize) -> RGBColor {
    TAB10[index % TAB10.len()]
}

/// Axis, grid and label greys.
pub const GRID: RGBColor = RGBColor(200, 200, 200);
pub const AXIS: RGBColor = RGBColor(90, 90, 90);
pub const INK: RGBColor = RGBColor(30, 30, 30);
