//! `${VAR}` and `${VAR:-default}` expansion of a pipeline file's text.
//!
//! Expansion runs on the raw text before TOML parsing, line by line, so every error can name
//! the line and column of the reference. A substituted value is escaped for a TOML basic
//! string (`"` and `\`), which is where references belong: `url = "${NATS_URL}"`.

/// A reference that could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExpandError {
    /// 1-based line of the reference.
    pub(crate) line: usize,
    /// 1-based column of the `$`.
    pub(crate) column: usize,
    /// What is wrong.
    pub(crate) message: String,
}

/// Expands every reference in `text`, reading variables through `lookup`.
pub(crate) fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, Vec<ExpandError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        expand_line(line, i + 1, lookup, &mut out, &mut errors);
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

fn expand_line(
    line: &str,
    line_no: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
    errors: &mut Vec<ExpandError>,
) {
    let mut rest = line;
    let mut consumed = 0;
    while let Some(pos) = rest.find("${") {
        out.push_str(&rest[..pos]);
        let column = consumed + pos + 1;
        let after = &rest[pos + 2..];
        let Some(end) = after.find('}') else {
            errors.push(ExpandError { line: line_no, column, message: "unterminated `${`: expected `}`".into() });
            out.push_str(&rest[pos..]);
            return;
        };
        let body = &after[..end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            errors.push(ExpandError {
                line: line_no,
                column,
                message: format!("`${{{body}}}` is not a valid variable reference"),
            });
        } else {
            match lookup(name).or_else(|| default.map(str::to_owned)) {
                Some(value) => out.push_str(&escape_basic(&value)),
                None => errors.push(ExpandError {
                    line: line_no,
                    column,
                    message: format!(
                        "environment variable `{name}` is not set and has no default (write `${{{name}:-default}}`)"
                    ),
                }),
            }
        }
        let skip = pos + 2 + end + 1;
        consumed += skip;
        rest = &rest[skip..];
    }
    out.push_str(rest);
}

fn escape_basic(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "NATS_URL").then(|| "nats://edge:4222".to_owned())
    }

    #[test]
    fn expands_set_variables_and_defaults() {
        let text = "url = \"${NATS_URL}\"\nx = \"${MISSING:-a\"b}\"\n";
        assert_eq!(expand(text, &env).unwrap(), "url = \"nats://edge:4222\"\nx = \"a\\\"b\"\n");
    }

    #[test]
    fn reports_unset_and_malformed_references_with_positions() {
        let errors = expand("a = 1\nb = \"${NOPE}\" # ${9x}\nc = \"${open\n", &env).unwrap_err();
        let at: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(at, vec![(2, 6), (2, 17), (3, 6)]);
        assert!(errors[0].message.contains("`NOPE` is not set"));
    }
}
