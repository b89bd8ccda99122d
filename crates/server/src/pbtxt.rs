//! A reader for protobuf text format, enough for Triton's `config.pbtxt`:
//! scalars, strings, nested messages with `{}` or `<>`, `[..]` lists, `#`
//! comments, optional `:` before a message and optional `,`/`;` separators.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number, identifier (enum name, true/false) or string, as written.
    Scalar(String),
    Message(Message),
}

/// Fields in file order; a repeated field appears once per element.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Message {
    pub fields: Vec<(String, Value)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(char),
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
}

impl Lexer<'_> {
    fn err<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: self.line,
            message: message.into(),
        })
    }

    fn next(&mut self) -> Result<Option<(Tok, usize)>, ParseError> {
        loop {
            let Some(&c) = self.src.get(self.pos) else {
                return Ok(None);
            };
            match c {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'#' => {
                    while self.src.get(self.pos).is_some_and(|&c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
        let line = self.line;
        let Some(&c) = self.src.get(self.pos) else {
            return Ok(None);
        };
        match c {
            b'{' | b'}' | b'[' | b']' | b'<' | b'>' | b':' | b',' | b';' => {
                self.pos += 1;
                Ok(Some((Tok::Punct(c as char), line)))
            }
            b'"' | b'\'' => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    let Some(&d) = self.src.get(self.pos) else {
                        return self.err("unterminated string");
                    };
                    self.pos += 1;
                    match d {
                        _ if d == c => break,
                        b'\n' => return self.err("newline inside a string"),
                        b'\\' => {
                            let Some(&e) = self.src.get(self.pos) else {
                                return self.err("unterminated string");
                            };
                            self.pos += 1;
                            out.push(match e {
                                b'n' => b'\n',
                                b't' => b'\t',
                                b'r' => b'\r',
                                other => other,
                            });
                        }
                        _ => out.push(d),
                    }
                }
                Ok(Some((
                    Tok::Str(String::from_utf8_lossy(&out).into_owned()),
                    line,
                )))
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'+' || c == b'.' => {
                let start = self.pos;
                while self.src.get(self.pos).is_some_and(|&c| {
                    c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'+' || c == b'.'
                }) {
                    self.pos += 1;
                }
                let s = String::from_utf8_lossy(self.src.get(start..self.pos).unwrap_or_default())
                    .into_owned();
                Ok(Some((Tok::Ident(s), line)))
            }
            other => self.err(format!("unexpected character '{}'", other as char)),
        }
    }
}

struct Parser<'a> {
    lex: Lexer<'a>,
    peeked: Option<Option<(Tok, usize)>>,
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<Option<&Tok>, ParseError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lex.next()?);
        }
        Ok(self
            .peeked
            .as_ref()
            .and_then(|t| t.as_ref())
            .map(|(t, _)| t))
    }

    fn bump(&mut self) -> Result<Option<Tok>, ParseError> {
        match self.peeked.take() {
            Some(t) => Ok(t.map(|(t, _)| t)),
            None => Ok(self.lex.next()?.map(|(t, _)| t)),
        }
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        self.lex.err(message)
    }

    fn message(&mut self, close: Option<char>) -> Result<Message, ParseError> {
        let mut msg = Message::default();
        loop {
            match self.bump()? {
                None if close.is_none() => return Ok(msg),
                None => return self.err(format!("missing '{}'", close.unwrap_or('}'))),
                Some(Tok::Punct(c)) if Some(c) == close => return Ok(msg),
                Some(Tok::Punct(',' | ';')) => continue,
                Some(Tok::Ident(name)) => self.field(name, &mut msg)?,
                Some(t) => return self.err(format!("expected a field name, found {t:?}")),
            }
        }
    }

    fn field(&mut self, name: String, msg: &mut Message) -> Result<(), ParseError> {
        let mut colon = false;
        if self.peek()? == Some(&Tok::Punct(':')) {
            self.bump()?;
            colon = true;
        }
        match self.bump()? {
            Some(Tok::Punct('{')) => msg
                .fields
                .push((name, Value::Message(self.message(Some('}'))?))),
            Some(Tok::Punct('<')) => msg
                .fields
                .push((name, Value::Message(self.message(Some('>'))?))),
            Some(Tok::Punct('[')) => loop {
                match self.bump()? {
                    Some(Tok::Punct(']')) => break,
                    Some(Tok::Punct(',')) => continue,
                    Some(Tok::Punct('{')) => msg
                        .fields
                        .push((name.clone(), Value::Message(self.message(Some('}'))?))),
                    Some(Tok::Ident(s) | Tok::Str(s)) => {
                        msg.fields.push((name.clone(), Value::Scalar(s)))
                    }
                    other => return self.err(format!("unexpected {other:?} in list '{name}'")),
                }
            },
            Some(Tok::Ident(s) | Tok::Str(s)) if colon => {
                // Adjacent strings concatenate, as in protobuf text format.
                let mut s = s;
                while let Some(Tok::Str(_)) = self.peek()? {
                    if let Some(Tok::Str(more)) = self.bump()? {
                        s.push_str(&more);
                    }
                }
                msg.fields.push((name, Value::Scalar(s)))
            }
            other => return self.err(format!("expected a value for '{name}', found {other:?}")),
        }
        Ok(())
    }
}

pub fn parse(text: &str) -> Result<Message, ParseError> {
    let mut p = Parser {
        lex: Lexer {
            src: text.as_bytes(),
            pos: 0,
            line: 1,
        },
        peeked: None,
    };
    p.message(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_triton_style_config() {
        let m = parse(
            r#"
            name: "mlp"  # trailing comment
            max_batch_size: 8
            input [ { name: "input", data_type: TYPE_FP32, dims: [ 30 ] } ]
            output { name: 'out' dims: 1 dims: 2 }
            dynamic_batching < preferred_batch_size: [4, 8] >
            parameters { key: "k" value: { string_value: "a" "b" } }
            "#,
        )
        .unwrap();
        let names: Vec<&str> = m.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "name",
                "max_batch_size",
                "input",
                "output",
                "dynamic_batching",
                "parameters"
            ]
        );
        let Value::Message(out) = &m.fields[3].1 else {
            panic!()
        };
        assert_eq!(out.fields.len(), 3);
        let Value::Message(p) = &m.fields[5].1 else {
            panic!()
        };
        let Value::Message(v) = &p.fields[1].1 else {
            panic!()
        };
        assert_eq!(v.fields[0].1, Value::Scalar("ab".into()));
    }

    #[test]
    fn reports_line_of_error() {
        let e = parse("name: \"x\"\nmax_batch_size: {\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(parse("name: \"unterminated").is_err());
        assert!(parse("input [ { name: \"a\" ").is_err());
        assert!(parse("x: @").is_err());
    }
}
