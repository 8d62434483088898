//! A hand-written SVG line chart: latency (ms, log scale) against subscribers
//! (log scale), one line per series, with axes, tick labels, a legend and a
//! title, sized 640×400. No plotting crate: a few dozen elements of text.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// The subscriber counts on the x axis.
pub const X_TICKS: [f64; 4] = [100.0, 1000.0, 5000.0, 10_000.0];

const W: f64 = 640.0;
const H: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 56.0;
/// The x domain, a little wider than the ticks.
const X_MIN: f64 = 70.0;
const X_MAX: f64 = 14_000.0;

/// One line of the chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Stroke colour (`#rrggbb`).
    pub color: &'static str,
    /// Dashed line.
    pub dashed: bool,
    /// (subscribers, latency ms), any order; non-positive values are left out.
    pub points: Vec<(f64, f64)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn px(x: f64) -> f64 {
    let t = (x.log10() - X_MIN.log10()) / (X_MAX.log10() - X_MIN.log10());
    LEFT + t * (W - LEFT - RIGHT)
}

fn tick_text(v: f64) -> String {
    if v >= 1000.0 {
        let n = v.round() as u64;
        format!("{},{:03}", n / 1000, n % 1000)
    } else if v >= 1.0 {
        format!("{}", v.round() as u64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_owned()
    }
}

/// The chart as an SVG document.
pub fn latency_svg(title: &str, series: &[Series]) -> String {
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| *y > 0.0 && y.is_finite())
        .collect();
    let (lo, hi) = if ys.is_empty() {
        (0.1, 100.0)
    } else {
        let min = ys.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = ys.iter().cloned().fold(0.0, f64::max);
        let lo = 10f64.powf(min.log10().floor());
        let mut hi = 10f64.powf(max.log10().ceil());
        if hi <= lo {
            hi = lo * 10.0;
        }
        (lo, hi)
    };
    let py = |y: f64| {
        let t = (y.log10() - lo.log10()) / (hi.log10() - lo.log10());
        H - BOTTOM - t * (H - TOP - BOTTOM)
    };
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r##"<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    // Grid and y ticks: 1, 2, 5 per decade.
    let mut decade = lo;
    while decade < hi * 1.0001 {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if v > hi * 1.0001 {
                break;
            }
            let y = py(v);
            let major = m == 1.0;
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="{}" stroke-width="1"/>"##,
                if major { "#cccccc" } else { "#eeeeee" }
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                x0 - 6.0,
                y + 4.0,
                tick_text(v)
            );
        }
        decade *= 10.0;
    }
    for v in X_TICKS {
        let x = px(v);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="#eeeeee" stroke-width="1"/>"##
        );
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{y1}" x2="{x:.1}" y2="{:.1}" stroke="#333333"/>"##,
            y1 + 5.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            y1 + 19.0,
            tick_text(v)
        );
    }
    // Axes and their titles.
    let _ = writeln!(
        s,
        r##"<path d="M{x0},{y0} V{y1} H{x1}" fill="none" stroke="#333333" stroke-width="1.5"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">subscribers (log scale)</text>"#,
        (x0 + x1) / 2.0,
        H - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{0:.1}" text-anchor="middle" transform="rotate(-90 18 {0:.1})">latency, ms (log scale)</text>"#,
        (y0 + y1) / 2.0
    );
    // Lines and markers.
    for ser in series {
        let mut pts: Vec<(f64, f64)> = ser
            .points
            .iter()
            .copied()
            .filter(|(x, y)| *x > 0.0 && *y > 0.0 && y.is_finite())
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if pts.is_empty() {
            continue;
        }
        let coords: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2.5"{}/>"#,
            coords.join(" "),
            ser.color,
            if ser.dashed {
                r#" stroke-dasharray="7 4""#
            } else {
                ""
            }
        );
        for (x, y) in &pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{}: {} subscribers, {:.2} ms</title></circle>"#,
                px(*x),
                py(*y),
                ser.color,
                esc(&ser.label),
                x,
                y
            );
        }
    }
    // Legend, top left inside the plot area.
    let lw = 210.0;
    let lh = 10.0 + 18.0 * series.len() as f64;
    let (lx, ly) = (x0 + 10.0, y0 + 8.0);
    let _ = writeln!(
        s,
        r##"<rect x="{lx}" y="{ly}" width="{lw}" height="{lh}" fill="#ffffff" fill-opacity="0.9" stroke="#999999"/>"##
    );
    for (i, ser) in series.iter().enumerate() {
        let y = ly + 14.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="2.5"{}/>"#,
            lx + 8.0,
            lx + 36.0,
            ser.color,
            if ser.dashed {
                r#" stroke-dasharray="7 4""#
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}">{}</text>"#,
            lx + 44.0,
            y + 4.0,
            esc(&ser.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Writes [`latency_svg`] to `path`, creating its directory.
pub fn write_latency_svg(path: &Path, title: &str, series: &[Series]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, latency_svg(title, series))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Element names must open and close in order; returns how many elements.
    fn check_balanced(svg: &str) -> usize {
        let mut stack: Vec<String> = Vec::new();
        let mut elements = 0;
        let mut rest = svg;
        while let Some(i) = rest.find('<') {
            let j = rest[i..].find('>').expect("unclosed tag") + i;
            let tag = &rest[i + 1..j];
            assert!(!tag.contains('<'), "'<' inside a tag: {tag}");
            let name = |t: &str| {
                t.split(|c: char| c.is_whitespace() || c == '/')
                    .next()
                    .unwrap_or("")
                    .to_owned()
            };
            if let Some(closing) = tag.strip_prefix('/') {
                assert_eq!(
                    stack.pop().as_deref(),
                    Some(closing),
                    "mismatched </{closing}>"
                );
            } else if tag.ends_with('/') {
                elements += 1;
            } else {
                elements += 1;
                stack.push(name(tag));
            }
            rest = &rest[j + 1..];
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        elements
    }

    #[test]
    fn svg_is_well_formed_and_labelled() {
        let series = vec![
            Series {
                label: "relay p50".into(),
                color: "#1f77b4",
                dashed: false,
                points: vec![(100.0, 0.6), (1000.0, 5.0), (5000.0, 21.0)],
            },
            Series {
                label: "relay p99 <&>".into(),
                color: "#d62728",
                dashed: false,
                points: vec![(5000.0, 48.0), (100.0, 1.3), (1000.0, 15.0)],
            },
            Series {
                label: "nchan p99".into(),
                color: "#7f7f7f",
                dashed: true,
                points: vec![(100.0, 1.4), (10_000.0, 108.0)],
            },
        ];
        let svg = latency_svg("Latency vs subscribers", &series);
        assert!(svg.starts_with("<svg "));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(check_balanced(&svg) > 20);
        for label in [
            "relay p50",
            "relay p99 &lt;&amp;&gt;",
            "nchan p99",
            "Latency vs subscribers",
        ] {
            assert!(svg.contains(label), "missing {label}");
        }
        for tick in ["100", "1,000", "5,000", "10,000"] {
            assert!(
                svg.contains(&format!(">{tick}</text>")),
                "missing x tick {tick}"
            );
        }
        assert_eq!(svg.matches("<polyline").count(), 3);
        // Empty input still yields a document.
        let empty = latency_svg("t", &[]);
        check_balanced(&empty);
    }
}
