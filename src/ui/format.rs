//! `--format table|json|yaml|csv|compact` for list commands.

use comfy_table::presets::{ASCII_FULL, NOTHING};
use serde::Serialize;

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
        OutputFormat::Json => serde_json::to_string_pretty(rows)
            .map(|s| s + "\n")
            .map_err(FormatError::Json),
        OutputFormat::Yaml => serde_saphyr::to_string(&rows).map_err(FormatError::Yaml),
        OutputFormat::Csv => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            for row in rows {
                writer.write_record(row.cells()).map_err(FormatError::Csv)?;
            }
            let bytes = writer
                .into_inner()
                .map_err(|e| FormatError::Csv(e.into_error().into()))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        OutputFormat::Table | OutputFormat::Compact => {
            let mut table = comfy_table::Table::new();
            table.load_preset(if format == OutputFormat::Table {
                ASCII_FULL
            } else {
                NOTHING
            });
            table.set_header(T::HEADERS.iter().copied());
            for row in rows {
                table.add_row(row.cells());
            }
            Ok(format!("{table}\n"))
        }
    }
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
    fn table_csv_yaml_and_compact_show_the_row() {
        for format in [OutputFormat::Table, OutputFormat::Compact] {
            let out = render(&rows(), format).unwrap();
            assert!(out.contains("NAME") && out.contains("micro1"), "{out}");
        }
        assert_eq!(
            render(&rows(), OutputFormat::Csv).unwrap(),
            "micro1,database\n"
        );
        let yaml = render(&rows(), OutputFormat::Yaml).unwrap();
        assert!(yaml.contains("name: micro1"), "{yaml}");
    }
}
