//! NATS subjects: validation, wildcard matching, and the templates that turn subject tokens
//! into fields (`{org}.{site}...`) and fields into output subjects (`acme.{site}.alert...`).

use std::collections::HashMap;

/// Default subject template: the reference articles' hierarchy.
pub const DEFAULT_SUBJECT_TEMPLATE: &str = "{org}.{site}.{area}.{line}.{machine}.{sensor}.{metric}";

/// Whether `token` can stand in a published subject: non-empty, no wildcard, no whitespace.
pub fn is_valid_token(token: &str) -> bool {
    !token.is_empty() && token != "*" && token != ">" && !token.contains(|c: char| c.is_whitespace() || c == '.')
}

/// Whether `subject` is a valid subject to publish to (no wildcards).
pub fn is_valid_subject(subject: &str) -> bool {
    !subject.is_empty() && subject.split('.').all(is_valid_token)
}

/// Whether `pattern` is a valid subscription filter (`*` per token, `>` last).
pub fn is_valid_filter(pattern: &str) -> bool {
    let tokens: Vec<&str> = pattern.split('.').collect();
    tokens.iter().enumerate().all(|(i, t)| *t == "*" || (*t == ">" && i == tokens.len() - 1) || is_valid_token(t))
}

/// Whether `subject` matches the filter `pattern`.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for p in pattern.split('.') {
        if p == ">" {
            return subject_tokens.next().is_some();
        }
        match subject_tokens.next() {
            Some(s) if p == "*" || p == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// Whether two filters can match a common subject.
pub fn overlaps(a: &str, b: &str) -> bool {
    let (mut at, mut bt) = (a.split('.'), b.split('.'));
    loop {
        match (at.next(), bt.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == "*" || y == "*" || x == y => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Why a subject does not fit a [`SubjectTemplate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectMismatch {
    /// Fewer tokens than the template has parts.
    #[error("subject has {got} tokens, the template needs at least {want}")]
    TooFewTokens {
        /// Tokens in the subject.
        got: usize,
        /// Parts in the template.
        want: usize,
    },
    /// More tokens than the template can take.
    #[error("subject has {got} tokens, the template takes {want}")]
    TooManyTokens {
        /// Tokens in the subject.
        got: usize,
        /// Parts in the template.
        want: usize,
    },
    /// A literal part of the template differs.
    #[error("token {index} is `{got}`, the template wants `{want}`")]
    Literal {
        /// 0-based token index.
        index: usize,
        /// The subject's token.
        got: String,
        /// The template's literal.
        want: String,
    },
    /// A token is empty or not allowed.
    #[error("token {index} is empty or malformed")]
    BadToken {
        /// 0-based token index.
        index: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(String),
}

/// How a message subject maps to fields: `{org}.{site}.{area}.{line}.{machine}.{sensor}.{metric}`.
///
/// Each `{name}` takes one token, except a trailing `{name}`, which takes all remaining tokens
/// joined with `.` (so `{metric}` is `vibration.rms` or `temperature`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectTemplate {
    parts: Vec<Part>,
    names: Vec<String>,
}

impl SubjectTemplate {
    /// Parses a template; the error says what is wrong with it.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut names = Vec::new();
        for token in template.split('.') {
            if let Some(name) = token.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                if !is_field_name(name) {
                    return Err(format!("`{{{name}}}` is not a valid field name"));
                }
                if names.iter().any(|n| n == name) {
                    return Err(format!("field `{name}` appears twice"));
                }
                names.push(name.to_owned());
                parts.push(Part::Field(name.to_owned()));
            } else if is_valid_token(token) && !token.contains(['{', '}']) {
                parts.push(Part::Literal(token.to_owned()));
            } else {
                return Err(format!("`{token}` is neither a literal token nor a whole `{{field}}`"));
            }
        }
        if names.is_empty() {
            return Err("the template names no `{field}`".into());
        }
        Ok(Self { parts, names })
    }

    /// The field names, in template order.
    pub fn field_names(&self) -> &[String] {
        &self.names
    }

    /// Index of a field in [`Self::field_names`].
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// The token position of field `name` when it is one token (not the last field, which
    /// takes the remaining tokens).
    pub fn token_of(&self, name: &str) -> Option<usize> {
        let i = self.parts.iter().position(|p| matches!(p, Part::Field(f) if f == name))?;
        (i + 1 < self.parts.len()).then_some(i)
    }

    /// The filter matching every subject of the template: `*` for each field, `>` for the
    /// last one (it may span tokens).
    pub fn filter(&self) -> String {
        let last = self.parts.len() - 1;
        let tokens: Vec<&str> = self
            .parts
            .iter()
            .enumerate()
            .map(|(i, p)| match p {
                Part::Literal(l) => l.as_str(),
                Part::Field(_) if i == last => ">",
                Part::Field(_) => "*",
            })
            .collect();
        tokens.join(".")
    }

    /// The subject a stream's transform gives a message matching `filter`, to put it under
    /// its partition (of `n`) by the values of the key fields `by`:
    /// `{{partition(n,<wildcards of by>)}}.<the subject>`, so that every message of one key lands
    /// in one partition. The error says why `filter` cannot be partitioned so (a field under
    /// its `>`, or the template's last field, which may span tokens).
    pub fn partitioned(&self, filter: &str, by: &[String], n: u32) -> Result<String, String> {
        let tokens: Vec<&str> = filter.split('.').collect();
        let tail = tokens.iter().position(|t| *t == ">");
        let mut wildcards = Vec::new();
        for field in by {
            let Some(pos) = self.token_of(field) else {
                return Err(format!(
                    "`{field}` is the last field of the subject template, which may span tokens; partition by a field before it"
                ));
            };
            if tail.is_some_and(|t| t <= pos) || pos >= tokens.len() {
                return Err(format!("filter `{filter}` puts `{field}` under its `>`; write that token as `*`"));
            }
            if tokens[pos] == "*" {
                // Wildcards are numbered from 1, in order.
                wildcards.push(tokens[..=pos].iter().filter(|t| **t == "*").count());
            }
        }
        wildcards.sort_unstable();
        let prefix = if wildcards.is_empty() {
            "0".to_owned() // the filter fixes every key field: one partition gets them all
        } else {
            let list: Vec<String> = wildcards.iter().map(ToString::to_string).collect();
            format!("{{{{partition({n},{})}}}}", list.join(","))
        };
        let mut dest = vec![prefix];
        let mut k = 0;
        for t in &tokens {
            dest.push(match *t {
                "*" => {
                    k += 1;
                    format!("{{{{wildcard({k})}}}}")
                }
                other => other.to_owned(),
            });
        }
        Ok(dest.join("."))
    }

    /// Splits `subject` into field values (in [`Self::field_names`] order), borrowing from it.
    pub fn extract<'s>(&self, subject: &'s str, out: &mut Vec<&'s str>) -> Result<(), SubjectMismatch> {
        out.clear();
        let tail_field = matches!(self.parts.last(), Some(Part::Field(_)));
        let mut rest = subject;
        for (index, part) in self.parts.iter().enumerate() {
            let last = index + 1 == self.parts.len();
            if rest.is_empty() && index > 0 {
                return Err(SubjectMismatch::TooFewTokens { got: index, want: self.parts.len() });
            }
            let token = if last && tail_field {
                std::mem::take(&mut rest)
            } else {
                match rest.split_once('.') {
                    Some((t, r)) => {
                        rest = r;
                        if r.is_empty() {
                            return Err(SubjectMismatch::BadToken { index: index + 1 });
                        }
                        t
                    }
                    None => std::mem::take(&mut rest),
                }
            };
            let valid = if last && tail_field { is_valid_subject(token) } else { is_valid_token(token) };
            if !valid {
                return Err(SubjectMismatch::BadToken { index });
            }
            match part {
                Part::Literal(want) if want != token => {
                    return Err(SubjectMismatch::Literal { index, got: token.to_owned(), want: want.clone() });
                }
                Part::Literal(_) => {}
                Part::Field(_) => out.push(token),
            }
        }
        if !rest.is_empty() {
            return Err(SubjectMismatch::TooManyTokens { got: subject.split('.').count(), want: self.parts.len() });
        }
        Ok(())
    }
}

fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An output subject with `{field}` placeholders anywhere in it: `acme.{site}.alert.rms.{machine}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputTemplate {
    source: String,
    fields: Vec<String>,
}

impl OutputTemplate {
    /// Parses a template, checking that it renders to a valid subject.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut fields = Vec::new();
        let mut rest = template;
        let mut skeleton = String::new();
        while let Some(open) = rest.find('{') {
            skeleton.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}') else {
                return Err("unterminated `{`".into());
            };
            let name = &rest[open + 1..open + close];
            if !is_field_name(name) {
                return Err(format!("`{{{name}}}` is not a valid field name"));
            }
            fields.push(name.to_owned());
            skeleton.push('x');
            rest = &rest[open + close + 1..];
        }
        skeleton.push_str(rest);
        if skeleton.contains('}') || !is_valid_subject(&skeleton) {
            return Err(format!("`{template}` does not make a valid subject"));
        }
        Ok(Self { source: template.to_owned(), fields })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The field names it uses.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// Renders with `values`; a missing field renders as `_`.
    pub fn render(&self, values: &HashMap<&str, &str>) -> String {
        let mut out = self.source.clone();
        for f in &self.fields {
            let v = values.get(f.as_str()).copied().unwrap_or("_");
            out = out.replacen(&format!("{{{f}}}"), v, 1);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "{org}.{site}.{area}.{line}.{machine}.{sensor}.{metric}";

    #[test]
    fn trailing_field_takes_the_rest_of_the_subject() {
        let t = SubjectTemplate::parse(T).unwrap();
        let mut out = Vec::new();
        t.extract("acme.munich.hall-a.line-1.cnc-001.spindle.vibration.rms", &mut out).unwrap();
        assert_eq!(out, ["acme", "munich", "hall-a", "line-1", "cnc-001", "spindle", "vibration.rms"]);
        t.extract("acme.munich.hall-a.line-1.cnc-001.coolant.temperature", &mut out).unwrap();
        assert_eq!(out[6], "temperature");
    }

    #[test]
    fn short_subjects_and_literal_mismatches_are_reported() {
        let t = SubjectTemplate::parse(T).unwrap();
        let mut out = Vec::new();
        assert!(matches!(t.extract("acme.munich", &mut out), Err(SubjectMismatch::TooFewTokens { .. })));
        let lit = SubjectTemplate::parse("acme.{site}.{machine}").unwrap();
        assert!(matches!(lit.extract("other.x.y", &mut out), Err(SubjectMismatch::Literal { index: 0, .. })));
        let fixed = SubjectTemplate::parse("acme.{site}.x").unwrap();
        assert!(matches!(fixed.extract("acme.a.x.y", &mut out), Err(SubjectMismatch::TooManyTokens { .. })));
    }

    #[test]
    fn templates_reject_malformed_parts() {
        assert!(SubjectTemplate::parse("acme.{si te}").is_err());
        assert!(SubjectTemplate::parse("acme.x{site}").is_err());
        assert!(SubjectTemplate::parse("acme.{a}.{a}").is_err());
        assert!(OutputTemplate::parse("acme.{site}.alert..x").is_err());
        assert!(OutputTemplate::parse("acme.{site").is_err());
    }

    #[test]
    fn wildcards_match_and_overlap_like_nats() {
        assert!(matches("acme.*.*.*.*.*.vibration.>", "acme.m.a.l.c.s.vibration.rms"));
        assert!(!matches("acme.*.*.*.*.*.vibration.>", "acme.m.a.l.c.s.vibration"));
        assert!(matches("acme.*.alert.*.*", "acme.munich.alert.vibration.cnc-1"));
        assert!(overlaps("acme.*.*.*.*.*.vibration.>", "acme.*.alert.>"));
        assert!(!overlaps("acme.*.*.*.*.*.vibration.>", "acme.*.alert.*.*"));
        assert!(is_valid_filter("acme.*.>") && !is_valid_filter("acme.>.x"));
    }

    #[test]
    fn output_templates_render_fields() {
        let t = OutputTemplate::parse("acme.{site}.alert.vibration.{machine}").unwrap();
        let values = HashMap::from([("site", "munich"), ("machine", "cnc-001")]);
        assert_eq!(t.render(&values), "acme.munich.alert.vibration.cnc-001");
        assert_eq!(t.fields(), ["site", "machine"]);
    }
}
