//! The archive's tables and the subject fields they carry as columns.

use crate::subject::SubjectTemplate;

/// One of the archive's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Scalar readings, one row per message.
    Readings,
    /// Raw sample blocks, one row per message.
    Waveforms,
    /// Window outputs, one row per feature of a closed window.
    Features,
    /// Alert transitions, one row per transition.
    Alerts,
}

impl Table {
    /// All tables, in the order they are registered for SQL.
    pub const ALL: [Table; 4] = [Table::Readings, Table::Waveforms, Table::Features, Table::Alerts];

    /// The table's name (and its directory below the archive prefix).
    pub fn name(self) -> &'static str {
        match self {
            Table::Readings => "readings",
            Table::Waveforms => "waveforms",
            Table::Features => "features",
            Table::Alerts => "alerts",
        }
    }

    /// The table called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether its rows are messages (readings, waveforms) rather than window outputs.
    pub fn is_raw(self) -> bool {
        matches!(self, Table::Readings | Table::Waveforms)
    }

    /// The source format a raw table needs.
    pub fn source_format(self) -> &'static str {
        match self {
            Table::Waveforms => "`format = \"waveform\"`",
            _ => "`format = \"json\"`",
        }
    }
}

/// How subject fields map to columns: every field of the source's subject template except
/// `site`, which is the partition column. Rows sort by `machine` (or the first column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Column names, in template order, without `site`.
    pub columns: Vec<String>,
    /// For each template field, its column (`None` for `site`).
    pub column_of_field: Vec<Option<usize>>,
    /// Template index of `site`.
    pub site_field: Option<usize>,
    /// Column rows are sorted by first.
    pub sort_column: usize,
}

/// Partition value used when a row has no site (a template or window key without `site`).
pub const NO_SITE: &str = "_";

impl Layout {
    /// The layout of a source template.
    pub fn of(template: &SubjectTemplate) -> Self {
        let mut columns = Vec::new();
        let mut column_of_field = Vec::new();
        let mut site_field = None;
        for (i, name) in template.field_names().iter().enumerate() {
            if name == "site" {
                site_field = Some(i);
                column_of_field.push(None);
            } else {
                column_of_field.push(Some(columns.len()));
                columns.push(name.clone());
            }
        }
        let sort_column = columns.iter().position(|c| c == "machine").unwrap_or(0);
        Self { columns, column_of_field, site_field, sort_column }
    }

    /// The site of a message from its subject fields (template order).
    pub fn site<'a>(&self, fields: &[&'a str]) -> &'a str {
        self.site_field.and_then(|i| fields.get(i).copied()).unwrap_or(NO_SITE)
    }

    /// The column values of a message from its subject fields (template order).
    pub fn columns_of(&self, fields: &[&str]) -> Vec<Option<String>> {
        let mut values = vec![None; self.columns.len()];
        for (field, column) in fields.iter().zip(&self.column_of_field) {
            if let Some(c) = column {
                values[*c] = Some((*field).to_owned());
            }
        }
        values
    }

    /// The column values and site of a window key (`names` are the key's field names).
    pub fn split_key<'a>(&self, names: &[String], values: &'a [String]) -> (Vec<Option<String>>, &'a str) {
        let mut out = vec![None; self.columns.len()];
        let mut site = NO_SITE;
        for (name, value) in names.iter().zip(values) {
            if name == "site" {
                site = value;
            } else if let Some(c) = self.columns.iter().position(|c| c == name) {
                out[c] = Some(value.clone());
            }
        }
        (out, site)
    }
}
