//! A strict reader of the Prometheus text exposition format (0.0.4), for checking what
//! `/metrics` serves: every line is a `# HELP`, a `# TYPE`, a sample, or blank; every
//! sample belongs to a family declared by a `# TYPE` line before it; histograms have
//! cumulative buckets ending in `+Inf` that agree with `_count`.

use std::collections::BTreeMap;

/// One sample: metric name, labels (sorted by name) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name → its `# TYPE`.
    pub types: BTreeMap<String, String>,
    /// Family name → its `# HELP` text.
    pub help: BTreeMap<String, String>,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the sample `name` whose labels are exactly `labels`; 0 when absent
    /// (a counter that never moved is not exported).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map_or(0.0, |s| s.value)
    }
}

/// Parses `text`, or says which line breaks the format and why.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    for (index, line) in text.lines().enumerate() {
        let at = |why: String| format!("line {}: {why}: {line:?}", index + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            check_metric_name(name).map_err(at)?;
            if out.help.insert(name.to_owned(), help.to_owned()).is_some() {
                return Err(at("second HELP for the family".into()));
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without a type".into()))?;
            check_metric_name(name).map_err(at)?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type {kind}")));
            }
            if out
                .samples
                .iter()
                .any(|s| family_of(&out, &s.name) == Some(name))
            {
                return Err(at("TYPE after samples of its family".into()));
            }
            if out.types.insert(name.to_owned(), kind.to_owned()).is_some() {
                return Err(at("second TYPE for the family".into()));
            }
        } else if line.starts_with('#') {
            return Err(at("comment that is neither HELP nor TYPE".into()));
        } else {
            let sample = parse_sample(line).map_err(at)?;
            let family = family_of(&out, &sample.name)
                .ok_or_else(|| at("sample of no declared family".into()))?;
            let kind = out.types[family].as_str();
            if kind == "counter" && sample.value < 0.0 {
                return Err(at("negative counter".into()));
            }
            if sample.name.ends_with("_bucket") && !sample.labels.contains_key("le") {
                return Err(at("bucket without `le`".into()));
            }
            out.samples.push(sample);
        }
    }
    check_histograms(&out)?;
    Ok(out)
}

/// The declared family a sample name belongs to: itself, or a histogram/summary base.
fn family_of<'a>(out: &'a Exposition, name: &str) -> Option<&'a str> {
    if let Some((family, _)) = out.types.get_key_value(name) {
        return Some(family);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        let (family, kind) = out.types.get_key_value(base)?;
        let fits = kind == "histogram" || (kind == "summary" && *suffix != "_bucket");
        fits.then_some(family.as_str())
    })
}

/// Buckets are cumulative, end in `+Inf`, and `+Inf` equals `_count`, per label set.
fn check_histograms(out: &Exposition) -> Result<(), String> {
    for (family, kind) in &out.types {
        if kind != "histogram" {
            continue;
        }
        let bucket_name = format!("{family}_bucket");
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for s in out.samples.iter().filter(|s| s.name == bucket_name) {
            let mut labels = s.labels.clone();
            let le = labels.remove("le").unwrap_or_default();
            let bound = parse_value(&le).map_err(|e| format!("{family}: le {e}"))?;
            series.entry(labels).or_default().push((bound, s.value));
        }
        for (labels, buckets) in series {
            let ordered = buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
            if !ordered {
                return Err(format!("{family}{labels:?}: buckets not cumulative"));
            }
            let last = buckets.last().copied().unwrap_or((0.0, 0.0));
            if last.0 != f64::INFINITY {
                return Err(format!("{family}{labels:?}: no +Inf bucket"));
            }
            let count = out
                .samples
                .iter()
                .find(|s| s.name == format!("{family}_count") && s.labels == labels);
            if count.map(|s| s.value) != Some(last.1) {
                return Err(format!(
                    "{family}{labels:?}: _count differs from +Inf bucket"
                ));
            }
        }
    }
    Ok(())
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!("bad label name {name:?}"))
    }
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| format!("bad value {text:?}")),
    }
}

/// `name{a="x",b="y"} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| "sample without a value".to_owned())?;
    let name = &line[..name_end];
    check_metric_name(name)?;
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = inner
                .split_once("=\"")
                .ok_or_else(|| "label without =\"".to_owned())?;
            check_label_name(label)?;
            let (value, after) = read_label_value(after)?;
            if labels.insert(label.to_owned(), value).is_some() {
                return Err(format!("label {label} twice"));
            }
            inner = match after.strip_prefix(',') {
                Some(next) => next,
                None if after.starts_with('}') => after,
                None => return Err("labels not separated by ,".into()),
            };
        }
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| "no space before the value".to_owned())?;
    let mut fields = rest.split(' ');
    let value = parse_value(fields.next().unwrap_or_default())?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("bad timestamp {timestamp:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Reads an escaped label value up to its closing quote; returns it and what follows.
fn read_label_value(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                other => return Err(format!("bad escape {other:?}")),
            },
            '\n' => return Err("newline in label value".into()),
            c => value.push(c),
        }
    }
    Err("unterminated label value".into())
}

#[test]
fn prometheus_reader_accepts_good_text_and_refuses_bad() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\"} 3\n\n\
                # TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\n\
                h_sum 0.7\nh_count 2\n";
    let parsed = parse(good).expect("good text");
    assert_eq!(parsed.value("a_total", &[("x", "1"), ("y", "q\"")]), 3.0);
    assert_eq!(parsed.value("h_count", &[]), 2.0);
    for bad in [
        "a_total 1\n",                                           // no TYPE
        "# TYPE a counter\na{x=1} 1\n",                          // unquoted label
        "# TYPE a counter\na 1 2 3\n",                           // trailing field
        "# TYPE a counter\na one\n",                             // not a number
        "# random comment\n",                                    // not HELP/TYPE
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_count 2\n", // no +Inf
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}
