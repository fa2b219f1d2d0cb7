//! Prometheus text exposition, as both binaries serve it (`/metrics` on the hub, the agent's
//! local endpoint). Formatting only; the counters live with their owners.

use std::fmt::Write;

/// Writes Prometheus text: one `# HELP`/`# TYPE` pair per metric, then its samples.
#[derive(Debug, Default)]
pub struct Exposition(String);

impl Exposition {
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.head(name, help, "counter");
        let _ = writeln!(self.0, "{name} {value}");
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.head(name, help, "gauge");
        let _ = writeln!(self.0, "{name} {value}");
    }

    /// A gauge with one label, one sample per value of it.
    pub fn gauge_by(&mut self, name: &str, help: &str, label: &str, samples: &[(&str, f64)]) {
        self.head(name, help, "gauge");
        for (value, sample) in samples {
            let _ = writeln!(self.0, "{name}{{{label}=\"{}\"}} {sample}", escape(value));
        }
    }

    fn head(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub fn finish(self) -> String {
        self.0
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_is_prometheus_text() {
        let mut m = Exposition::default();
        m.counter("x_total", "Things.", 3);
        m.gauge_by("y", "Ys.", "status", &[("on\"line", 1.0)]);
        assert_eq!(
            m.finish(),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n# HELP y Ys.\n# TYPE y gauge\ny{status=\"on\\\"line\"} 1\n"
        );
    }
}
