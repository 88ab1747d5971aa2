//! `--format table|json|yaml|csv|compact` for list commands, and how sizes
//! and names are shown and ordered.

use std::cmp::Ordering;

use comfy_table::presets::NOTHING;
use serde::Serialize;

use super::printer::neutralise;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
    Yaml,
    Csv,
    Compact,
}

/// A row type that can be shown as a table and serialized as an object.
pub trait Tabular: Serialize {
    const HEADERS: &'static [&'static str];
    fn cells(&self) -> Vec<String>;
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("failed to encode output as JSON")]
    Json(#[source] serde_json::Error),
    #[error("failed to encode output as YAML")]
    Yaml(#[source] serde_saphyr::ser::Error),
    #[error("failed to encode output as CSV")]
    Csv(#[source] csv::Error),
}

/// Renders `rows` in `format`. JSON is an array of objects; CSV has no header
/// row, like LXD's.
pub fn render<T: Tabular>(rows: &[T], format: OutputFormat) -> Result<String, FormatError> {
    match format {
        OutputFormat::Json | OutputFormat::Yaml => encode(&rows, format),
        OutputFormat::Csv => csv(rows.iter().map(Tabular::cells)),
        OutputFormat::Table | OutputFormat::Compact => Ok(table(T::HEADERS, rows, format)),
    }
}

/// One document as JSON or YAML; any other format is taken as JSON, since
/// only these two can hold a whole document.
pub fn encode(value: &impl Serialize, format: OutputFormat) -> Result<String, FormatError> {
    if format == OutputFormat::Yaml {
        serde_saphyr::to_string(value).map_err(FormatError::Yaml)
    } else {
        serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(FormatError::Json)
    }
}

/// CSV records without a header row, as LXD writes them.
pub fn csv(records: impl IntoIterator<Item = Vec<String>>) -> Result<String, FormatError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for record in records {
        writer.write_record(record).map_err(FormatError::Csv)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| FormatError::Csv(e.into_error().into()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A table as `lxc` draws it, or `compact`: no rules at all. Tables are read
/// by people at a terminal, so what the cells hold (names and descriptions
/// other machines chose) cannot steer it; the other formats are data.
fn table<T: Tabular>(headers: &[&str], rows: &[T], format: OutputFormat) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.cells()
                .iter()
                .map(|cell| neutralise(cell).into_owned())
                .collect()
        })
        .collect();
    if format == OutputFormat::Table {
        return lxc_table(headers, &rows);
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(NOTHING);
    table.set_header(headers.iter().copied());
    for row in rows {
        table.add_row(row);
    }
    format!("{table}\n")
}

/// `lxc`'s table: a `+---+` rule above, below and between rows, no `=` line,
/// headers centred (the odd space on the right, as lxc's), cells on the
/// left, and a cell's lines one under the other.
fn lxc_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let width = |text: &str| text.chars().count();
    let widths: Vec<usize> = (0..headers.len())
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .flat_map(|cell| cell.lines())
                .map(width)
                .chain([width(headers[column])])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let mut out = rule.clone();
    for (header, w) in headers.iter().zip(&widths) {
        let left = (w - width(header)) / 2;
        let rest = w - left;
        out.push_str(&format!("| {}{header:<rest$} ", " ".repeat(left)));
    }
    out.push_str("|\n");
    out.push_str(&rule);
    for row in rows {
        let lines: Vec<Vec<&str>> = row.iter().map(|cell| cell.lines().collect()).collect();
        let height = lines.iter().map(Vec::len).max().unwrap_or(0).max(1);
        for line in 0..height {
            for (column, w) in widths.iter().enumerate() {
                let text = lines
                    .get(column)
                    .and_then(|l| l.get(line))
                    .copied()
                    .unwrap_or("");
                out.push_str(&format!("| {text:<w$} "));
            }
            out.push_str("|\n");
        }
        out.push_str(&rule);
    }
    out
}

/// A byte count in IEC units with two decimals, as upstream's
/// `units.GetByteSizeStringIEC(size, 2)`: `512B`, `1.50KiB`, `100.00GiB`.
pub fn bytes_iec(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

/// Natural order for names people read: runs of digits compare as numbers
/// (`micro2` < `micro10`), and runs of letters that start alike compare
/// shorter first, the way kernel device names count (`sdz` < `sdaa`). Ties
/// (`01` against `1`) fall back to plain string order, so the order is total.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a_rest, mut b_rest) = (a, b);
    while let (Some(a_run), Some(b_run)) = (first_run(a_rest), first_run(b_rest)) {
        let order = match (a_run.chars().next(), b_run.chars().next()) {
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (x, y) = (a_run.trim_start_matches('0'), b_run.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            (Some(x), Some(y)) if x == y && x.is_alphabetic() => {
                a_run.len().cmp(&b_run.len()).then_with(|| a_run.cmp(b_run))
            }
            _ => a_run.cmp(b_run),
        };
        if order != Ordering::Equal {
            return order;
        }
        a_rest = &a_rest[a_run.len()..];
        b_rest = &b_rest[b_run.len()..];
    }
    a_rest.len().cmp(&b_rest.len()).then_with(|| a.cmp(b))
}

/// The leading run of digits, of letters, or of anything else.
fn first_run(text: &str) -> Option<&str> {
    let kind = |c: char| {
        if c.is_ascii_digit() {
            0
        } else if c.is_alphabetic() {
            1
        } else {
            2
        }
    };
    let first = kind(text.chars().next()?);
    let end = text
        .char_indices()
        .find(|&(_, c)| kind(c) != first)
        .map_or(text.len(), |(i, _)| i);
    Some(&text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        name: String,
        roles: Vec<String>,
    }

    impl Tabular for Row {
        const HEADERS: &'static [&'static str] = &["NAME", "ROLES"];
        fn cells(&self) -> Vec<String> {
            vec![self.name.clone(), self.roles.join("\n")]
        }
    }

    fn rows() -> Vec<Row> {
        vec![Row {
            name: "micro1".into(),
            roles: vec!["database".into()],
        }]
    }

    #[test]
    fn json_is_an_array_of_objects() {
        let out = render(&rows(), OutputFormat::Json).unwrap();
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value[0]["name"], "micro1");
        assert_eq!(value[0]["roles"][0], "database");
    }

    #[test]
    fn tables_are_drawn_as_lxc_draws_them() {
        let rows = vec![
            Row {
                name: "micro1".into(),
                roles: vec!["database-leader".into(), "database".into()],
            },
            Row {
                name: "micro10".into(),
                roles: vec![],
            },
        ];
        assert_eq!(
            render(&rows, OutputFormat::Table).unwrap(),
            "\
+---------+-----------------+
|  NAME   |      ROLES      |
+---------+-----------------+
| micro1  | database-leader |
|         | database        |
+---------+-----------------+
| micro10 |                 |
+---------+-----------------+
"
        );
        let empty: Vec<Row> = Vec::new();
        assert_eq!(
            render(&empty, OutputFormat::Table).unwrap(),
            "+------+-------+\n| NAME | ROLES |\n+------+-------+\n"
        );
    }

    #[test]
    fn escape_codes_in_cells_cannot_steer_the_terminal_from_a_table() {
        let rows = vec![Row {
            name: "micro1\u{1b}[2J\r".into(),
            roles: vec!["data\u{202e}base".into()],
        }];
        for format in [OutputFormat::Table, OutputFormat::Compact] {
            let out = render(&rows, format).unwrap();
            assert!(!out.contains(['\u{1b}', '\r', '\u{202e}']), "{out:?}");
            assert!(out.contains(r"micro1\u{1b}[2J\u{d}"), "{out:?}");
        }
        // The other formats are data, escaped by their own rules.
        let json = render(&rows, OutputFormat::Json).unwrap();
        assert!(json.contains(r"micro1\u001b[2J\r"), "{json}");
    }

    #[test]
    fn table_csv_yaml_and_compact_show_the_row() {
        let compact = render(&rows(), OutputFormat::Compact).unwrap();
        assert!(
            compact.contains("NAME") && compact.contains("micro1"),
            "{compact}"
        );
        assert!(
            !compact.contains('+') && !compact.contains('|'),
            "{compact}"
        );
        assert_eq!(
            render(&rows(), OutputFormat::Csv).unwrap(),
            "micro1,database\n"
        );
        let yaml = render(&rows(), OutputFormat::Yaml).unwrap();
        assert!(yaml.contains("name: micro1"), "{yaml}");
    }

    #[test]
    fn sizes_in_iec_units() {
        const KIB: u64 = 1024;
        const GIB: u64 = 1 << 30;
        assert_eq!(bytes_iec(0), "0B");
        assert_eq!(bytes_iec(512), "512B");
        assert_eq!(bytes_iec(1023), "1023B");
        assert_eq!(bytes_iec(KIB), "1.00KiB");
        assert_eq!(bytes_iec(1536), "1.50KiB");
        assert_eq!(bytes_iec(512 * KIB * KIB), "512.00MiB");
        assert_eq!(bytes_iec(100 * GIB), "100.00GiB");
        // A "2 TB" disk.
        assert_eq!(bytes_iec(2_000_398_934_016), "1.82TiB");
        assert_eq!(bytes_iec(u64::MAX), "16.00EiB");
    }

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        names.sort_by(|a, b| natural_cmp(a, b));
        names
    }

    #[test]
    fn natural_order_counts_numbers_and_device_letters() {
        assert_eq!(
            sorted(&[
                "micro10", "micro2", "micro1", "micro02", "db1", "web1", "node1"
            ]),
            [
                "db1", "micro1", "micro02", "micro2", "micro10", "node1", "web1"
            ]
        );
        assert_eq!(
            sorted(&[
                "/dev/sdaa",
                "/dev/sdb",
                "/dev/sda",
                "/dev/nvme10n1",
                "/dev/nvme2n1",
                "/dev/vdb"
            ]),
            [
                "/dev/nvme2n1",
                "/dev/nvme10n1",
                "/dev/sda",
                "/dev/sdb",
                "/dev/sdaa",
                "/dev/vdb"
            ]
        );
        assert_eq!(
            sorted(&["a-b", "a", "a1", "ab", "a-"]),
            ["a", "a-", "a-b", "a1", "ab"]
        );
        assert_eq!(natural_cmp("disk", "disk"), Ordering::Equal);
        assert_eq!(natural_cmp("x007", "x7"), Ordering::Less);
        assert_eq!(
            natural_cmp("99999999999999999999999", "100000000000000000000000"),
            Ordering::Less
        );
    }
}
