//! The book's bar chart: one horizontal bar per row, its median time,
//! coloured by who runs the container. Drawn with plotters' SVG backend.

use super::report::Line;
use super::rows::Kind;
use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const WIDTH: u32 = 900;
const ROW_HEIGHT: u32 = 26;
/// The caption, the x axis and the margins.
const FRAME_HEIGHT: u32 = 110;
const FONT: &str = "sans-serif";

/// Each kind of row: its name in the legend and its colour.
const KINDS: [(Kind, &str, RGBColor); 4] = [
    (Kind::Floor, "floor", RGBColor(150, 150, 150)),
    (Kind::Step, "tara's steps", RGBColor(52, 101, 164)),
    (Kind::Crun, "crun (C)", RGBColor(78, 154, 6)),
    (Kind::Runc, "runc (Go)", RGBColor(204, 121, 0)),
];

/// The chart of `lines` as an SVG document.
pub fn svg(lines: &[Line]) -> Result<String> {
    let mut svg = String::new();
    let height = FRAME_HEIGHT + ROW_HEIGHT * lines.len() as u32;
    {
        let backend = SVGBackend::with_string(&mut svg, (WIDTH, height));
        draw(backend.into_drawing_area(), lines)
            .map_err(|error| anyhow!("drawing the chart: {error}"))?;
    }
    Ok(svg)
}

fn draw<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    lines: &[Line],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    area.fill(&WHITE)?;
    let count = lines.len() as i32;
    let longest = lines.iter().map(|line| line.median_ms).fold(0.0, f64::max);
    // Room on the right for the last bar's number.
    let x_end = (longest * 1.15).max(1.0);
    let mut chart = ChartBuilder::on(&area)
        .caption(
            "Start and stop of a container running /bin/true: median, ms (shorter is faster)",
            (FONT, 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(230)
        .build_cartesian_2d(0.0..x_end, (0..count).into_segmented())?;
    // Row 0 at the top: the y axis counts upwards.
    let position = |index: usize| count - 1 - index as i32;
    let label_of = |value: &SegmentValue<i32>| match value {
        SegmentValue::CenterOf(y) if (0..count).contains(y) => {
            lines[(count - 1 - y) as usize].label.clone()
        }
        _ => String::new(),
    };
    let whole_ms = |ms: &f64| format!("{ms:.0}");
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_max_light_lines(1)
        .x_label_formatter(&whole_ms)
        .y_labels(lines.len())
        .y_label_formatter(&label_of)
        .label_style((FONT, 13))
        .x_desc("ms")
        .draw()?;
    for (kind, name, colour) in KINDS {
        let bars = lines
            .iter()
            .enumerate()
            .filter(|(_, line)| line.kind == kind)
            .map(|(index, line)| {
                let y = position(index);
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(y)),
                        (line.median_ms, SegmentValue::Exact(y + 1)),
                    ],
                    colour.filled(),
                );
                bar.set_margin(4, 4, 0, 0);
                bar
            });
        chart
            .draw_series(bars)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
    }
    let number_style = TextStyle::from((FONT, 12)).pos(Pos::new(HPos::Left, VPos::Center));
    chart.draw_series(lines.iter().enumerate().map(|(index, line)| {
        Text::new(
            format!(" {:.1}", line.median_ms),
            (line.median_ms, SegmentValue::CenterOf(position(index))),
            number_style.clone(),
        )
    }))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 13))
        .draw()?;
    area.present()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(label: &str, kind: Kind, median_ms: f64) -> Line {
        Line {
            label: label.into(),
            kind,
            median_ms,
            min_ms: median_ms,
            max_ms: median_ms,
            vs_floor: None,
            vs_crun: None,
            rss_mib: None,
        }
    }

    #[test]
    fn the_chart_names_every_row_and_kind() {
        let svg = svg(&[
            line("/bin/true", Kind::Floor, 1.7),
            line("04 run, bridge", Kind::Step, 49.8),
            line("crun: + net", Kind::Crun, 9.1),
            line("runc: + net", Kind::Runc, 21.0),
        ])
        .unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        for text in [
            "/bin/true",
            "04 run, bridge",
            "crun: + net",
            "runc (Go)",
            " 49.8",
        ] {
            assert!(svg.contains(text), "{text} is missing");
        }
        // The bars, in their kind's colour.
        assert!(svg.contains("#3465A4"), "a step's blue bar");
    }
}
