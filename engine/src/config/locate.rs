//! Maps a key path in a pipeline file (`window[1].tumbling`) to its line and column.

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    /// A table key.
    Key(String),
    /// An index into an array (of tables).
    Index(usize),
}

/// A path to a key in a pipeline file, printed the way users write it: `window[0].tumbling`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<PathSeg>);

impl KeyPath {
    /// The path of `key` below this one.
    pub fn key(&self, key: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(PathSeg::Key(key.to_owned()));
        p
    }

    /// The path of element `i` below this one.
    pub fn index(&self, i: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(PathSeg::Index(i));
        p
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                PathSeg::Key(k) if i == 0 => write!(f, "{k}")?,
                PathSeg::Key(k) => write!(f, ".{k}")?,
                PathSeg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line and column of a byte offset in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The byte span of the deepest part of `path` present in the parsed document: the key
/// itself when it exists, otherwise the closest enclosing table.
pub(crate) fn span_of(doc: &DeTable<'_>, path: &KeyPath) -> Option<Range<usize>> {
    let mut table = doc;
    let mut best: Option<Range<usize>> = None;
    let mut segs = path.0.iter().peekable();
    while let Some(seg) = segs.next() {
        let PathSeg::Key(name) = seg else { return best };
        let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name.as_str()) else {
            return best;
        };
        best = Some(key.span());
        let mut value: &DeValue<'_> = value.get_ref();
        if let Some(PathSeg::Index(i)) = segs.peek() {
            let DeValue::Array(items) = value else {
                return best;
            };
            let Some(item) = items.get(*i) else {
                return best;
            };
            if item.span().start > 0 || item.span().end > 0 {
                best = Some(item.span());
            }
            value = item.get_ref();
            segs.next();
        }
        match value {
            DeValue::Table(t) => table = t,
            _ => return best,
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_inside_arrays_of_tables() {
        let text =
            "[pipeline]\nname = \"x\"\n\n[[window]]\nname = \"a\"\n\n[[window]]\nname = \"b\"\ntumbling = \"zz\"\n";
        let doc = DeTable::parse(text).unwrap();
        let path = KeyPath::default().key("window").index(1).key("tumbling");
        assert_eq!(path.to_string(), "window[1].tumbling");
        let span = span_of(doc.get_ref(), &path).unwrap();
        assert_eq!(line_col(text, span.start), (9, 1));
        let missing = KeyPath::default().key("window").index(0).key("tumbling");
        let span = span_of(doc.get_ref(), &missing).unwrap();
        assert!(line_col(text, span.start).0 >= 4, "points into the first [[window]]");
    }
}
