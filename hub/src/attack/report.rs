//! A session's report: one self-contained HTML file (a minijinja template, escaping on, the
//! chart as inline SVG) or a PDF made here with `pdf-writer` (the typst project's low-level
//! writer: no external program, no font files — the PDF's standard Helvetica). Both print
//! the same figures, formatted by the same functions, from the same rows.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::db::models::{AttackSession, AttackStep};
use crate::db::schema::{attack_sessions, attack_steps, devices, predictions};

/// Scores drawn at most (the newest are dropped past it).
const MAX_POINTS: i64 = 20_000;

/// One scored window of the device during the session.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub ts: DateTime<Utc>,
    pub score: f64,
    pub attack: bool,
    /// The step whose simulated flows the window holds, if any.
    pub step: Option<i32>,
}

/// Everything a report shows.
#[derive(Debug, Clone)]
pub struct ReportData {
    pub session: AttackSession,
    pub steps: Vec<AttackStep>,
    pub device_name: String,
    pub device_ip: String,
    pub points: Vec<Point>,
    pub generated_at: DateTime<Utc>,
}

/// Loads a session's report data; `None` if there is no such session.
pub fn load(c: &mut PgConnection, id: Uuid) -> QueryResult<Option<ReportData>> {
    let Some(session) = attack_sessions::table
        .find(id)
        .select(AttackSession::as_select())
        .first(c)
        .optional()?
    else {
        return Ok(None);
    };
    let steps = attack_steps::table
        .filter(attack_steps::session_id.eq(id))
        .order(attack_steps::step_order.asc())
        .select(AttackStep::as_select())
        .load(c)?;
    let (device_name, device_ip): (String, ipnetwork::IpNetwork) = devices::table
        .find(session.device_id)
        .select((devices::name, devices::ip_address))
        .first(c)?;
    let points = match session.started_at {
        Some(from) => {
            let to = session.completed_at.unwrap_or_else(Utc::now) + chrono::Duration::seconds(10);
            predictions::table
                .filter(predictions::device_id.eq(session.device_id))
                .filter(predictions::ts.between(from, to))
                .order(predictions::ts.asc())
                .limit(MAX_POINTS)
                .select((
                    predictions::ts,
                    predictions::score,
                    predictions::label,
                    predictions::attack_session_id,
                    predictions::attack_step,
                ))
                .load::<(DateTime<Utc>, f64, String, Option<Uuid>, Option<i32>)>(c)?
                .into_iter()
                .map(|(ts, score, label, s, step)| Point {
                    ts,
                    score,
                    attack: label == "attack",
                    step: if s == Some(id) { step } else { None },
                })
                .collect()
        }
        None => Vec::new(),
    };
    Ok(Some(ReportData {
        session,
        steps,
        device_name,
        device_ip: device_ip.ip().to_string(),
        points,
        generated_at: Utc::now(),
    }))
}

/// A rate or a share as printed in reports.
pub fn fmt_rate(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.3}"))
}

/// A latency as printed in reports.
pub fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.0} ms"))
}

fn fmt_count(v: Option<i32>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn fmt_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// A step's row as both reports print it.
#[derive(Debug, Clone, Serialize)]
pub struct StepFigures {
    pub order: i32,
    pub attack: String,
    pub duration: String,
    pub intensity: String,
    pub epsilon: String,
    pub status: String,
    pub windows: String,
    pub flagged: String,
    pub detection_rate: String,
    pub clean_detection_rate: String,
    pub avg_confidence: String,
    pub latency: String,
    pub family_accuracy: String,
    pub prevention: String,
    pub message: String,
}

pub fn step_figures(s: &AttackStep) -> StepFigures {
    StepFigures {
        order: s.step_order,
        attack: match &s.variant {
            Some(v) => format!("{} ({v})", s.attack_type),
            None => s.attack_type.clone(),
        },
        duration: format!("{} s", s.duration_seconds),
        intensity: format!("{:.2}", s.intensity),
        epsilon: if s.adversarial_enabled {
            s.adversarial_epsilon.map_or_else(|| "-".into(), |e| format!("{e}"))
        } else {
            "-".into()
        },
        status: s.status.clone(),
        windows: fmt_count(s.windows),
        flagged: fmt_count(s.attack_windows),
        detection_rate: fmt_rate(s.detection_rate),
        clean_detection_rate: fmt_rate(s.clean_detection_rate),
        avg_confidence: fmt_rate(s.avg_confidence),
        latency: fmt_ms(s.detection_latency_ms),
        family_accuracy: fmt_rate(s.family_accuracy),
        prevention: s.auto_action_taken.clone().unwrap_or_else(|| "-".into()),
        message: s.message.clone().unwrap_or_default(),
    }
}

/// The session-wide figures as both reports print them, from `results`.
fn summary(d: &ReportData) -> Vec<(&'static str, String)> {
    let r = d.session.results.clone().unwrap_or(serde_json::Value::Null);
    let f = |k: &str| r.get(k).and_then(serde_json::Value::as_f64);
    vec![
        ("Detection rate, all steps", fmt_rate(f("detection_rate"))),
        ("Clean steps", fmt_rate(f("clean_steps_detection_rate"))),
        (
            "Adversarial steps (FGSM)",
            fmt_rate(f("adversarial_steps_detection_rate")),
        ),
        (
            "Adversarial steps unperturbed",
            fmt_rate(f("adversarial_steps_unperturbed_detection_rate")),
        ),
        ("Mean detection latency", fmt_ms(f("mean_detection_latency_ms"))),
    ]
}

fn header(d: &ReportData) -> Vec<(&'static str, String)> {
    let s = &d.session;
    vec![
        ("Session", s.id.to_string()),
        ("Device", format!("{} ({})", d.device_name, d.device_ip)),
        ("Status", s.status.clone()),
        ("Model", s.model_version.clone().unwrap_or_else(|| "-".into())),
        ("Started", fmt_time(s.started_at)),
        ("Ended", fmt_time(s.completed_at)),
        ("Report made", fmt_time(Some(d.generated_at))),
    ]
}

const TEMPLATE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Attack simulation report {{ session_id }}</title>
<style>
:root { color-scheme: light dark; font-family: system-ui, sans-serif; }
body { margin: 2rem auto; max-width: 72rem; padding: 0 1rem; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; font-size: .9rem; }
th, td { border: 1px solid #8884; padding: .3rem .5rem; text-align: left; }
th { background: #8882; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dt { font-weight: 600; }
.chart { width: 100%; height: auto; }
.scroll { overflow-x: auto; }
</style></head>
<body>
<h1>Attack simulation report</h1>
<dl>{% for k, v in header %}<dt>{{ k }}</dt><dd>{{ v }}</dd>{% endfor %}</dl>
{% if message %}<p>{{ message }}</p>{% endif %}
<h2>Steps</h2>
<div class="scroll"><table>
<thead><tr><th>#</th><th>Attack</th><th>Duration</th><th>Intensity</th><th>FGSM &epsilon;</th><th>Status</th>
<th>Windows</th><th>Flagged</th><th>Detection rate</th><th>Unperturbed rate</th><th>Avg confidence</th>
<th>Detection latency</th><th>Family accuracy</th><th>Prevention</th></tr></thead>
<tbody>{% for s in steps %}<tr><td>{{ s.order }}</td><td>{{ s.attack }}</td><td>{{ s.duration }}</td><td>{{ s.intensity }}</td>
<td>{{ s.epsilon }}</td><td>{{ s.status }}</td><td>{{ s.windows }}</td><td>{{ s.flagged }}</td><td>{{ s.detection_rate }}</td>
<td>{{ s.clean_detection_rate }}</td><td>{{ s.avg_confidence }}</td><td>{{ s.latency }}</td><td>{{ s.family_accuracy }}</td>
<td>{{ s.prevention }}</td></tr>{% if s.message %}<tr><td></td><td colspan="13">{{ s.message }}</td></tr>{% endif %}{% endfor %}</tbody>
</table></div>
<h2>Clean and adversarial detection</h2>
<dl>{% for k, v in summary %}<dt>{{ k }}</dt><dd>{{ v }}</dd>{% endfor %}</dl>
<h2>Score over time</h2>
<p>Every window of the device scored during the session; shaded bands are the steps, red points windows flagged as attacks.</p>
{{ chart | safe }}
</body></html>
"#;

/// The report as one HTML file.
pub fn html(d: &ReportData) -> Result<String, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    // Escaping on for everything: the template is HTML, device names come from users.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("report.html", TEMPLATE)?;
    let steps: Vec<StepFigures> = d.steps.iter().map(step_figures).collect();
    env.get_template("report.html")?.render(minijinja::context! {
        session_id => d.session.id.to_string(),
        header => header(d),
        message => d.session.message.clone(),
        steps => steps,
        summary => summary(d),
        chart => chart_svg(d),
    })
}

/// The time axis of the chart: from the session's start to its end (or last point).
fn span(d: &ReportData) -> Option<(i64, i64)> {
    let start = d.session.started_at.or_else(|| d.points.first().map(|p| p.ts))?;
    let end = d
        .session
        .completed_at
        .into_iter()
        .chain(d.points.last().map(|p| p.ts))
        .max()
        .unwrap_or(start);
    let (a, b) = (start.timestamp_millis(), end.timestamp_millis());
    Some((a, b.max(a + 1_000)))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The score chart as inline SVG.
pub fn chart_svg(d: &ReportData) -> String {
    const W: f64 = 900.0;
    const H: f64 = 260.0;
    const L: f64 = 40.0;
    const B: f64 = 30.0;
    let Some((t0, t1)) = span(d) else {
        return "<p>No window was scored during the session.</p>".into();
    };
    let x = |ms: i64| L + (W - L - 10.0) * (ms - t0) as f64 / (t1 - t0) as f64;
    let y = |score: f64| 10.0 + (H - B - 10.0) * (1.0 - score.clamp(0.0, 1.0));
    let mut svg = format!(
        r##"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="Attack score of each window over the session, steps shaded" xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="sans-serif">"##
    );
    for s in &d.steps {
        let (Some(a), Some(b)) = (s.started_at, s.completed_at.or(d.session.completed_at)) else {
            continue;
        };
        let (xa, xb) = (x(a.timestamp_millis()), x(b.timestamp_millis()));
        svg.push_str(&format!(
            r##"<rect x="{xa:.1}" y="10" width="{:.1}" height="{:.1}" fill="#f59e0b" fill-opacity="0.18"/><text x="{:.1}" y="22" fill="currentColor">{} {}</text>"##,
            (xb - xa).max(1.0),
            H - B - 10.0,
            xa + 3.0,
            s.step_order,
            xml_escape(&s.attack_type)
        ));
    }
    for v in [0.0, 0.5, 1.0] {
        svg.push_str(&format!(
            r##"<line x1="{L}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="currentColor" stroke-opacity="0.25"/><text x="4" y="{:.1}" fill="currentColor">{v:.1}</text>"##,
            W - 10.0,
            y(v),
            y(v),
            y(v) + 4.0
        ));
    }
    for p in &d.points {
        let colour = if p.attack { "#dc2626" } else { "#2563eb" };
        svg.push_str(&format!(
            r##"<circle cx="{:.1}" cy="{:.1}" r="2" fill="{colour}"/>"##,
            x(p.ts.timestamp_millis()),
            y(p.score)
        ));
    }
    svg.push_str(&format!(
        r##"<text x="{L}" y="{}" fill="currentColor">{}</text><text x="{}" y="{}" text-anchor="end" fill="currentColor">+{:.0} s</text></svg>"##,
        H - 8.0,
        xml_escape(&fmt_time(d.session.started_at)),
        W - 10.0,
        H - 8.0,
        (t1 - t0) as f64 / 1e3
    ));
    svg
}

/// Text for the PDF's standard font (WinAnsi): what is not ASCII becomes `?`.
fn ascii(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c as u8
            } else {
                b'?'
            }
        })
        .collect()
}

/// The report as a PDF (A4, as many pages as the steps need).
pub fn pdf(d: &ReportData) -> Vec<u8> {
    use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};
    const PAGE_W: f32 = 595.0;
    const PAGE_H: f32 = 842.0;
    const MARGIN: f32 = 40.0;

    let mut pages: Vec<Content> = Vec::new();
    let mut content = Content::new();
    let mut y = PAGE_H - MARGIN;
    let text = |c: &mut Content, x: f32, y: f32, size: f32, bold: bool, s: &str| {
        c.begin_text();
        c.set_font(Name(if bold { b"F2" } else { b"F1" }), size);
        c.next_line(x, y);
        c.show(Str(&ascii(s)));
        c.end_text();
    };
    let need = |c: &mut Content, y: &mut f32, h: f32, pages: &mut Vec<Content>| {
        if *y - h < MARGIN {
            pages.push(std::mem::replace(c, Content::new()));
            *y = PAGE_H - MARGIN;
        }
    };
    text(&mut content, MARGIN, y, 18.0, true, "Attack simulation report");
    y -= 26.0;
    for (k, v) in header(d) {
        text(&mut content, MARGIN, y, 10.0, true, k);
        text(&mut content, MARGIN + 90.0, y, 10.0, false, &v);
        y -= 14.0;
    }
    if let Some(m) = &d.session.message {
        text(&mut content, MARGIN, y, 10.0, false, m);
        y -= 14.0;
    }
    y -= 8.0;
    text(&mut content, MARGIN, y, 13.0, true, "Steps");
    y -= 16.0;
    for s in d.steps.iter().map(step_figures) {
        need(&mut content, &mut y, 56.0, &mut pages);
        let title = format!(
            "{}. {}  {}  intensity {}  FGSM eps {}  {}",
            s.order, s.attack, s.duration, s.intensity, s.epsilon, s.status
        );
        text(&mut content, MARGIN, y, 10.0, true, &title);
        y -= 13.0;
        let cells = [
            ("windows", &s.windows),
            ("flagged", &s.flagged),
            ("detection rate", &s.detection_rate),
            ("unperturbed rate", &s.clean_detection_rate),
            ("avg confidence", &s.avg_confidence),
        ];
        let mut x = MARGIN + 12.0;
        for (k, v) in cells {
            text(&mut content, x, y, 9.0, false, &format!("{k} {v}"));
            x += 100.0;
        }
        y -= 12.0;
        let cells = [
            ("detection latency", &s.latency),
            ("family accuracy", &s.family_accuracy),
            ("prevention", &s.prevention),
        ];
        let mut x = MARGIN + 12.0;
        for (k, v) in cells {
            text(&mut content, x, y, 9.0, false, &format!("{k} {v}"));
            x += 150.0;
        }
        y -= 12.0;
        if !s.message.is_empty() {
            text(&mut content, MARGIN + 12.0, y, 9.0, false, &s.message);
            y -= 12.0;
        }
        y -= 6.0;
    }
    need(&mut content, &mut y, 100.0, &mut pages);
    text(&mut content, MARGIN, y, 13.0, true, "Clean and adversarial detection");
    y -= 16.0;
    for (k, v) in summary(d) {
        text(&mut content, MARGIN, y, 10.0, false, &format!("{k}: {v}"));
        y -= 13.0;
    }
    y -= 10.0;
    need(&mut content, &mut y, 200.0, &mut pages);
    text(&mut content, MARGIN, y, 13.0, true, "Score over time");
    y -= 10.0;
    draw_chart(&mut content, d, MARGIN, y - 160.0, PAGE_W - 2.0 * MARGIN, 160.0);
    pages.push(content);

    let mut pdf = Pdf::new();
    let (catalog, tree, font, bold) = (Ref::new(1), Ref::new(2), Ref::new(3), Ref::new(4));
    let mut next = 5;
    let mut ids = Vec::new();
    for _ in &pages {
        ids.push((Ref::new(next), Ref::new(next + 1)));
        next += 2;
    }
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(ids.iter().map(|(p, _)| *p))
        .count(ids.len() as i32);
    for (page_content, (page, stream)) in pages.into_iter().zip(&ids) {
        let mut p = pdf.page(*page);
        p.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        p.parent(tree);
        p.contents(*stream);
        {
            let mut res = p.resources();
            let mut fonts = res.fonts();
            fonts.pair(Name(b"F1"), font);
            fonts.pair(Name(b"F2"), bold);
            fonts.finish();
        }
        p.finish();
        let bytes = page_content.finish();
        pdf.stream(*stream, &bytes);
    }
    pdf.type1_font(font)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.finish()
}

fn draw_chart(c: &mut pdf_writer::Content, d: &ReportData, x0: f32, y0: f32, w: f32, h: f32) {
    c.set_line_width(0.5);
    c.set_stroke_rgb(0.6, 0.6, 0.6);
    c.rect(x0, y0, w, h);
    c.stroke();
    let Some((t0, t1)) = span(d) else {
        return;
    };
    let x = |ms: i64| x0 + w * ((ms - t0) as f64 / (t1 - t0) as f64) as f32;
    // Inset, so that scores of 0 and 1 do not vanish into the frame.
    let y = |score: f64| y0 + 4.0 + (h - 8.0) * score.clamp(0.0, 1.0) as f32;
    c.set_fill_rgb(1.0, 0.85, 0.55);
    for s in &d.steps {
        if let (Some(a), Some(b)) = (s.started_at, s.completed_at.or(d.session.completed_at)) {
            let (xa, xb) = (x(a.timestamp_millis()), x(b.timestamp_millis()));
            c.rect(xa, y0, (xb - xa).max(1.0), h);
            c.fill_nonzero();
        }
    }
    c.set_stroke_rgb(0.8, 0.8, 0.8);
    c.move_to(x0, y(0.5));
    c.line_to(x0 + w, y(0.5));
    c.stroke();
    for p in &d.points {
        if p.attack {
            c.set_fill_rgb(0.86, 0.15, 0.15);
        } else {
            c.set_fill_rgb(0.15, 0.39, 0.92);
        }
        c.rect(x(p.ts.timestamp_millis()) - 1.0, y(p.score) - 1.0, 2.0, 2.0);
        c.fill_nonzero();
    }
    for s in &d.steps {
        if let Some(a) = s.started_at {
            c.set_fill_rgb(0.0, 0.0, 0.0);
            c.begin_text();
            c.set_font(pdf_writer::Name(b"F1"), 7.0);
            c.next_line(x(a.timestamp_millis()) + 2.0, y0 + h - 9.0);
            c.show(pdf_writer::Str(&ascii(&format!("{} {}", s.step_order, s.attack_type))));
            c.end_text();
        }
    }
    c.set_fill_rgb(0.0, 0.0, 0.0);
    c.begin_text();
    c.set_font(pdf_writer::Name(b"F1"), 7.0);
    c.next_line(x0, y0 - 10.0);
    c.show(pdf_writer::Str(&ascii(&format!(
        "score 0-1 over {:.0} s from {}",
        (t1 - t0) as f64 / 1e3,
        fmt_time(d.session.started_at)
    ))));
    c.end_text();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> ReportData {
        let now = Utc::now();
        let session = AttackSession {
            id: Uuid::new_v4(),
            device_id: Uuid::new_v4(),
            pipeline_config: serde_json::json!({}),
            status: "completed".into(),
            progress_pct: 100.0,
            current_step: Some(1),
            results: Some(serde_json::json!({"detection_rate": 0.75, "clean_steps_detection_rate": 0.75})),
            started_at: Some(now - chrono::Duration::seconds(30)),
            completed_at: Some(now),
            created_by: None,
            created_at: now,
            model_version: Some("m1".into()),
            message: Some("1 steps completed".into()),
            command_id: None,
        };
        let step = AttackStep {
            id: Uuid::new_v4(),
            session_id: session.id,
            step_order: 1,
            attack_type: "port_scan".into(),
            duration_seconds: 20,
            intensity: 0.5,
            variant: None,
            adversarial_enabled: false,
            adversarial_epsilon: None,
            status: "completed".into(),
            detected: Some(true),
            avg_confidence: Some(0.8123),
            detection_latency_ms: Some(1234.4),
            auto_action_taken: None,
            started_at: Some(now - chrono::Duration::seconds(25)),
            completed_at: Some(now - chrono::Duration::seconds(5)),
            windows: Some(40),
            attack_windows: Some(30),
            detection_rate: Some(0.75),
            clean_detection_rate: None,
            avg_score: Some(0.7),
            family_accuracy: Some(1.0),
            message: None,
        };
        ReportData {
            session,
            steps: vec![step],
            device_name: "<cam & co>".into(),
            device_ip: "192.168.7.20".into(),
            points: (0..20)
                .map(|i| Point {
                    ts: now - chrono::Duration::seconds(25 - i),
                    score: f64::from(i as i32) / 20.0,
                    attack: i > 10,
                    step: Some(1),
                })
                .collect(),
            generated_at: now,
        }
    }

    #[test]
    fn html_escapes_names_and_holds_the_step_figures_and_a_chart() {
        let d = data();
        let html = html(&d).expect("renders");
        assert!(html.contains("&lt;cam &amp; co&gt;"), "device names are escaped");
        assert!(!html.contains("<cam"), "no raw markup from data");
        for figure in ["0.750", "0.812", "1234 ms", "40", "30", "1.000"] {
            assert!(html.contains(figure), "{figure} missing");
        }
        assert!(
            html.contains("<svg") && html.matches("<circle").count() == 20,
            "the chart has every point"
        );
    }

    #[test]
    fn pdf_is_a_pdf_with_the_same_figures() {
        let d = data();
        let bytes = pdf(&d);
        assert!(bytes.starts_with(b"%PDF-"), "a PDF");
        let text = String::from_utf8_lossy(&bytes);
        for figure in [
            "detection rate 0.750",
            "avg confidence 0.812",
            "detection latency 1234 ms",
        ] {
            assert!(text.contains(figure), "{figure} missing from the PDF's text");
        }
    }
}
