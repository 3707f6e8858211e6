//! Charts drawn on the server as inline SVG: bars and lines over labelled x positions, with
//! axes, gridline labels, a `<title>` and an `aria-label` for screen readers. No script, no
//! inline style (the page's CSS colours them through classes); each page also shows the
//! numbers in a table, the fallback for anyone the picture does not serve.

use std::fmt::Write as _;

/// The drawing's width, SVG units.
const WIDTH: i64 = 640;
/// The drawing's height, SVG units.
const HEIGHT: i64 = 220;
/// Room left of the plot for the y labels.
const LEFT: i64 = 64;
/// Room below the plot for the x labels.
const BOTTOM: i64 = 28;
/// Room above the plot.
const TOP: i64 = 12;
/// Room right of the plot.
const RIGHT: i64 = 12;
/// The most x positions a chart draws.
pub const POINTS_MAX: usize = 62;
/// The most series a chart draws.
pub const SERIES_MAX: usize = 6;

/// One series of values (one per x label), drawn with CSS class `class` (`series-0` …).
#[derive(Debug, Clone)]
pub struct Series {
    /// What it is, in words (the legend).
    pub label: String,
    /// Its values, one per x position.
    pub values: Vec<i64>,
}

/// A chart: its title, the x labels, the series and how to write a y value.
#[derive(Debug)]
pub struct Chart<'a> {
    /// The title (the SVG's `<title>` and `aria-label`).
    pub title: &'a str,
    /// The x labels.
    pub x_labels: &'a [String],
    /// The series.
    pub series: &'a [Series],
    /// A y value in words (a count, an amount, a share).
    pub y_format: fn(i64) -> String,
}

/// Escapes text for SVG (XML).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A "nice" top of the y axis at or above `max` (1, 2 or 5 times a power of ten).
fn nice_top(max: i64) -> i64 {
    if max <= 0 {
        return 1;
    }
    let mut step: i64 = 1;
    loop {
        for factor in [1, 2, 5] {
            let top = step.saturating_mul(factor);
            if top >= max {
                return top;
            }
        }
        if step > i64::MAX / 10 {
            return i64::MAX;
        }
        step *= 10;
    }
}

struct Frame {
    top_value: i64,
    points: usize,
}

impl Frame {
    fn plot_width() -> i64 {
        WIDTH - LEFT - RIGHT
    }

    fn plot_height() -> i64 {
        HEIGHT - TOP - BOTTOM
    }

    /// The y of `value`, SVG units (128-bit: values may be amounts in fen).
    fn y(&self, value: i64) -> i64 {
        let value = i128::from(value.clamp(0, self.top_value));
        let height = i128::from(Frame::plot_height());
        let y = i128::from(TOP + Frame::plot_height()) - value * height / i128::from(self.top_value.max(1));
        i64::try_from(y).unwrap_or(TOP)
    }

    /// The left edge and width of x position `index`.
    fn slot(&self, index: usize) -> (i64, i64) {
        let points = i64::try_from(self.points.max(1)).unwrap_or(1);
        let width = Frame::plot_width() / points;
        (LEFT + i64::try_from(index).unwrap_or(0) * width, width)
    }
}

fn open(out: &mut String, chart: &Chart<'_>) -> Frame {
    let points = chart.x_labels.len().min(POINTS_MAX);
    let max =
        chart.series.iter().take(SERIES_MAX).flat_map(|s| s.values.iter().take(points)).copied().max().unwrap_or(0);
    let frame = Frame { top_value: nice_top(max), points };
    let title = escape(chart.title);
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{title}\"><title>{title}</title>"
    );
    // Axes and three gridline labels (0, half, top).
    let bottom = TOP + Frame::plot_height();
    let _ = write!(out, "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{bottom}\"/>");
    let _ =
        write!(out, "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{}\" y2=\"{bottom}\"/>", WIDTH - RIGHT);
    for value in [0, frame.top_value / 2, frame.top_value] {
        let y = frame.y(value);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 4,
            y + 3,
            escape(&(chart.y_format)(value))
        );
    }
    // X labels: every one when few, else every few so they do not overlap.
    let every = points.div_ceil(14).max(1);
    for (index, label) in chart.x_labels.iter().take(points).enumerate() {
        if index % every == 0 {
            let (x, width) = frame.slot(index);
            let _ = write!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + width / 2,
                HEIGHT - BOTTOM + 14,
                escape(label)
            );
        }
    }
    frame
}

fn legend(out: &mut String, series: &[Series]) {
    for (index, one) in series.iter().take(SERIES_MAX).enumerate() {
        let x = LEFT + 8 + i64::try_from(index).unwrap_or(0) * 110;
        let _ = write!(
            out,
            "<rect class=\"series-{index}\" x=\"{x}\" y=\"{}\" width=\"8\" height=\"8\"/><text x=\"{}\" y=\"{}\">{}</text>",
            HEIGHT - 10,
            x + 12,
            HEIGHT - 2,
            escape(&one.label)
        );
    }
}

/// Grouped bars: one group per x label, one bar per series.
pub fn bars(chart: &Chart<'_>) -> String {
    let mut out = String::new();
    let frame = open(&mut out, chart);
    let series: Vec<&Series> = chart.series.iter().take(SERIES_MAX).collect();
    let count = i64::try_from(series.len().max(1)).unwrap_or(1);
    for index in 0..frame.points {
        let (x, width) = frame.slot(index);
        let bar = ((width - 4) / count).max(1);
        for (n, one) in series.iter().enumerate() {
            let value = one.values.get(index).copied().unwrap_or(0);
            let y = frame.y(value);
            let left = x + 2 + i64::try_from(n).unwrap_or(0) * bar;
            let _ = write!(
                out,
                "<rect class=\"bar series-{n}\" x=\"{left}\" y=\"{y}\" width=\"{bar}\" height=\"{}\"><title>{} {}: {}</title></rect>",
                TOP + Frame::plot_height() - y,
                escape(&one.label),
                escape(chart.x_labels.get(index).map_or("", String::as_str)),
                escape(&(chart.y_format)(value))
            );
        }
    }
    legend(&mut out, chart.series);
    out.push_str("</svg>");
    out
}

/// Lines: one polyline per series through the middle of each x position.
pub fn lines(chart: &Chart<'_>) -> String {
    let mut out = String::new();
    let frame = open(&mut out, chart);
    for (n, one) in chart.series.iter().take(SERIES_MAX).enumerate() {
        let mut points = String::new();
        for index in 0..frame.points {
            let (x, width) = frame.slot(index);
            let value = one.values.get(index).copied().unwrap_or(0);
            let _ = write!(points, "{},{} ", x + width / 2, frame.y(value));
        }
        let _ = write!(out, "<polyline class=\"line series-{n}\" points=\"{}\"/>", points.trim_end());
        for index in 0..frame.points {
            let (x, width) = frame.slot(index);
            let value = one.values.get(index).copied().unwrap_or(0);
            let _ = write!(
                out,
                "<circle class=\"dot series-{n}\" cx=\"{}\" cy=\"{}\" r=\"3\"><title>{} {}: {}</title></circle>",
                x + width / 2,
                frame.y(value),
                escape(&one.label),
                escape(chart.x_labels.get(index).map_or("", String::as_str)),
                escape(&(chart.y_format)(value))
            );
        }
    }
    legend(&mut out, chart.series);
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(value: i64) -> String {
        value.to_string()
    }

    #[test]
    fn bars_have_a_title_axes_and_one_rect_per_value() {
        let labels = vec!["12-01".to_owned(), "12-02".to_owned()];
        let series = vec![Series { label: "Card <b>".into(), values: vec![3, 7] }];
        let svg = bars(&Chart { title: "Volume & more", x_labels: &labels, series: &series, y_format: plain });
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("aria-label=\"Volume &amp; more\"") && svg.contains("<title>Volume &amp; more</title>"));
        assert_eq!(svg.matches("class=\"bar series-0\"").count(), 2);
        assert!(svg.contains("Card &lt;b&gt; 12-02: 7"));
        assert!(!svg.contains("style="));
        // The top of the axis is 10, so 7 reaches 70% of the height.
        assert!(svg.contains(">10</text>"));
    }

    #[test]
    fn lines_draw_a_polyline_per_series_and_survive_huge_values() {
        let labels = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let series = vec![
            Series { label: "x".into(), values: vec![0, i64::MAX, 5] },
            Series { label: "y".into(), values: vec![] },
        ];
        let svg = lines(&Chart { title: "t", x_labels: &labels, series: &series, y_format: plain });
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(nice_top(0), 1);
        assert_eq!(nice_top(7), 10);
        assert_eq!(nice_top(101), 200);
    }
}
