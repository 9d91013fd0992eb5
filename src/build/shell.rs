//! The word lexer of Dockerfile arguments, as Docker's `shell.Lex` reads
//! them: quotes (`'…'` literal, `"…"` with variables), the escape character
//! (`\` or the `# escape=` directive's), and variable substitution —
//! `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`,
//! `${VAR+word}`, `${VAR:?msg}`, `${VAR?msg}`. RUN, CMD and ENTRYPOINT are
//! not run through it (their shell expands variables itself).

use super::Error;

/// Looks variables up (ENV and ARG values of the build at that step).
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

impl Env for [(String, String)] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

impl Env for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<String> {
        Env::get(self.as_slice(), name)
    }
}

/// The lexer with its escape character.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    pub escape: char,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer { escape: '\\' }
    }
}

struct Scan<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Env,
    escape: char,
}

impl Scan<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }
}

impl Lexer {
    /// One word: quotes removed, escapes and variables resolved.
    pub fn word(&self, s: &str, env: &dyn Env) -> Result<String, Error> {
        Ok(self.process(s, env, false)?.concat())
    }

    /// Words split on unquoted white space (EXPOSE, VOLUME's shell form,
    /// the name=value pairs of ENV and LABEL).
    pub fn words(&self, s: &str, env: &dyn Env) -> Result<Vec<String>, Error> {
        self.process(s, env, true)
    }

    /// Splits on unquoted white space without resolving anything: quotes,
    /// escapes and `$` stay as written (for the parser, which resolves
    /// words only when the step runs).
    pub fn split_raw(&self, s: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut quote: Option<char> = None;
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match quote {
                Some(q) => {
                    cur.push(c);
                    if c == q {
                        quote = None;
                    } else if c == self.escape && q == '"' {
                        if let Some(n) = chars.next() {
                            cur.push(n);
                        }
                    }
                }
                None if c.is_whitespace() => {
                    if !cur.is_empty() {
                        words.push(std::mem::take(&mut cur));
                    }
                }
                None => {
                    cur.push(c);
                    if c == '\'' || c == '"' {
                        quote = Some(c);
                    } else if c == self.escape {
                        if let Some(n) = chars.next() {
                            cur.push(n);
                        }
                    }
                }
            }
        }
        if !cur.is_empty() {
            words.push(cur);
        }
        words
    }

    /// `s` as a word that resolves to itself apart from `$` variables (an
    /// element of a JSON-form argument list).
    pub fn protect_quotes(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            if c == '\'' || c == '"' || c == self.escape {
                out.push(self.escape);
            }
            out.push(c);
        }
        out
    }

    fn process(&self, s: &str, env: &dyn Env, split: bool) -> Result<Vec<String>, Error> {
        let mut sc = Scan {
            chars: s.chars().collect(),
            pos: 0,
            env,
            escape: self.escape,
        };
        let mut words = Vec::new();
        let mut cur = String::new();
        // A word exists once it has any character or quotes (`""` is a word).
        let mut started = false;
        while let Some(c) = sc.peek() {
            if split && c.is_whitespace() {
                sc.next();
                if started {
                    words.push(std::mem::take(&mut cur));
                    started = false;
                }
                continue;
            }
            started = true;
            match c {
                '\'' => {
                    sc.next();
                    cur.push_str(&single_quoted(&mut sc)?);
                }
                '"' => {
                    sc.next();
                    cur.push_str(&double_quoted(&mut sc)?);
                }
                '$' => {
                    let v = dollar(&mut sc)?;
                    if split {
                        // An unquoted expansion is split like the shell does.
                        let mut parts = v.split(char::is_whitespace).peekable();
                        if let Some(first) = parts.next() {
                            cur.push_str(first);
                        }
                        for p in parts {
                            words.push(std::mem::take(&mut cur));
                            cur.push_str(p);
                        }
                    } else {
                        cur.push_str(&v);
                    }
                }
                c if c == sc.escape => {
                    sc.next();
                    // A lone escape at the end is dropped.
                    if let Some(n) = sc.next() {
                        cur.push(n);
                    }
                }
                c => {
                    sc.next();
                    cur.push(c);
                }
            }
        }
        if started || (!split && words.is_empty()) {
            words.push(cur);
        }
        Ok(words)
    }
}

fn single_quoted(sc: &mut Scan<'_>) -> Result<String, Error> {
    let mut out = String::new();
    loop {
        match sc.next() {
            None => {
                return Err(Error::syntax(
                    "unexpected end of statement while looking for matching single-quote",
                ))
            }
            Some('\'') => return Ok(out),
            Some(c) => out.push(c),
        }
    }
}

fn double_quoted(sc: &mut Scan<'_>) -> Result<String, Error> {
    let mut out = String::new();
    loop {
        match sc.peek() {
            None => {
                return Err(Error::syntax(
                    "unexpected end of statement while looking for matching double-quote",
                ))
            }
            Some('"') => {
                sc.next();
                return Ok(out);
            }
            Some('$') => out.push_str(&dollar(sc)?),
            Some(c) if c == sc.escape => {
                sc.next();
                match sc.peek() {
                    None => {}
                    Some(n) if n == '"' || n == '$' || n == sc.escape => {
                        sc.next();
                        out.push(n);
                    }
                    // Other escapes are kept as written.
                    Some(_) => out.push(c),
                }
            }
            Some(c) => {
                sc.next();
                out.push(c);
            }
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `$NAME`, `${…}`; a `$` not followed by a name stays a `$`.
fn dollar(sc: &mut Scan<'_>) -> Result<String, Error> {
    sc.next(); // '$'
    match sc.peek() {
        Some('{') => {
            sc.next();
            braced(sc)
        }
        Some(c) if is_name_char(c) => {
            let mut name = String::new();
            while let Some(c) = sc.peek().filter(|c| is_name_char(*c)) {
                sc.next();
                name.push(c);
            }
            Ok(sc.env.get(&name).unwrap_or_default())
        }
        _ => Ok("$".into()),
    }
}

fn braced(sc: &mut Scan<'_>) -> Result<String, Error> {
    let mut name = String::new();
    while let Some(c) = sc.peek().filter(|c| is_name_char(*c)) {
        sc.next();
        name.push(c);
    }
    if name.is_empty() {
        return Err(Error::syntax("bad substitution: missing variable name"));
    }
    let value = sc.env.get(&name);
    let c = sc.next();
    if c == Some('}') {
        return Ok(value.unwrap_or_default());
    }
    let colon = c == Some(':');
    let op = if colon { sc.next() } else { c };
    let op = match op {
        Some(o @ ('-' | '+' | '?')) => o,
        _ => {
            return Err(Error::syntax(format!(
                "bad substitution: unsupported modifier in ${{{name}…}}"
            )))
        }
    };
    let word = word_until_brace(sc)?;
    // With ':' an empty value counts as unset.
    let set = match &value {
        Some(v) => !colon || !v.is_empty(),
        None => false,
    };
    Ok(match op {
        '-' if set => value.unwrap_or_default(),
        '-' => word,
        '+' if set => word,
        '+' => String::new(),
        _ if set => value.unwrap_or_default(),
        _ => {
            let msg = if word.is_empty() {
                "is not allowed to be unset".to_string()
            } else {
                word
            };
            return Err(Error::syntax(format!("{name}: {msg}")));
        }
    })
}

/// The word of a `${VAR:-word}`, itself expanded, up to the closing brace.
fn word_until_brace(sc: &mut Scan<'_>) -> Result<String, Error> {
    let mut out = String::new();
    loop {
        match sc.peek() {
            None => return Err(Error::syntax("bad substitution: missing '}'")),
            Some('}') => {
                sc.next();
                return Ok(out);
            }
            Some('$') => out.push_str(&dollar(sc)?),
            Some('\'') => {
                sc.next();
                out.push_str(&single_quoted(sc)?);
            }
            Some('"') => {
                sc.next();
                out.push_str(&double_quoted(sc)?);
            }
            Some(c) if c == sc.escape => {
                sc.next();
                if let Some(n) = sc.next() {
                    out.push(n);
                }
            }
            Some(c) => {
                sc.next();
                out.push(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![
            ("A".into(), "apple".into()),
            ("EMPTY".into(), String::new()),
            ("SP".into(), "a b".into()),
        ]
    }

    fn w(s: &str) -> String {
        Lexer::default().word(s, &env()).unwrap()
    }

    #[test]
    fn variables() {
        assert_eq!(w("$A"), "apple");
        assert_eq!(w("${A}s"), "apples");
        assert_eq!(w("x$A-y"), "xapple-y");
        assert_eq!(w("$NOPE"), "");
        assert_eq!(w("${NOPE:-pear}"), "pear");
        assert_eq!(w("${EMPTY:-pear}"), "pear");
        assert_eq!(w("${EMPTY-pear}"), "");
        assert_eq!(w("${NOPE-pear}"), "pear");
        assert_eq!(w("${A:-pear}"), "apple");
        assert_eq!(w("${A:+set}"), "set");
        assert_eq!(w("${EMPTY:+set}"), "");
        assert_eq!(w("${EMPTY+set}"), "set");
        assert_eq!(w("${NOPE:+set}"), "");
        assert_eq!(w("${NOPE:-$A}"), "apple");
        assert_eq!(w("${NOPE:-${A}x}"), "applex");
        assert_eq!(w("$"), "$");
        assert_eq!(w("a$ b"), "a$ b");
        assert_eq!(w("${A:?}"), "apple");
        let e = Lexer::default()
            .word("${NOPE:?need it}", &env())
            .unwrap_err();
        assert!(e.to_string().contains("NOPE: need it"), "{e}");
        assert!(Lexer::default().word("${A", &env()).is_err());
        assert!(Lexer::default().word("${}", &env()).is_err());
        assert!(Lexer::default().word("${A:=x}", &env()).is_err());
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A x\""), "apple x");
        assert_eq!(w(r"\$A"), "$A");
        assert_eq!(w(r#""a\"b""#), "a\"b");
        assert_eq!(w(r#""a\nb""#), r"a\nb");
        assert_eq!(w(r"a\ b"), "a b");
        assert_eq!(w("\"\""), "");
        assert!(Lexer::default().word("'open", &env()).is_err());
        assert!(Lexer::default().word("\"open", &env()).is_err());
        // With the backtick escape (Windows-style Dockerfiles) a backslash is literal.
        let l = Lexer { escape: '`' };
        assert_eq!(l.word(r"C:\dir", &env()).unwrap(), r"C:\dir");
        assert_eq!(l.word("`$A", &env()).unwrap(), "$A");
    }

    #[test]
    fn word_splitting() {
        let l = Lexer::default();
        assert_eq!(
            l.words("80/tcp  $A 'x y' \"\"", &env()).unwrap(),
            vec!["80/tcp", "apple", "x y", ""]
        );
        assert_eq!(l.words("$SP c", &env()).unwrap(), vec!["a", "b", "c"]);
        assert_eq!(l.words("\"$SP\" c", &env()).unwrap(), vec!["a b", "c"]);
        assert_eq!(l.words("   ", &env()).unwrap(), Vec::<String>::new());
        assert_eq!(l.words(r"a\ b c", &env()).unwrap(), vec!["a b", "c"]);
        assert_eq!(
            l.split_raw(r#"a="x y" b='$c d' e\ f"#),
            vec![r#"a="x y""#, "b='$c d'", r"e\ f"]
        );
        let p = l.protect_quotes(r#"it's "$A" \n"#);
        assert_eq!(l.word(&p, &env()).unwrap(), r#"it's "apple" \n"#);
    }
}
