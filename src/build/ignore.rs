//! `.dockerignore`: Docker's patterns (Go's `filepath.Match` per path
//! element, `**` for any number of directories, `!` exceptions, the last
//! matching pattern deciding), and a path that sits below an excluded
//! directory is excluded with it.

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    exclusion: bool,
    parts: Vec<String>,
}

/// `path` cleaned as Go's `filepath.Clean` does it, relative, `/`-separated
/// (`.` for the root).
pub fn clean(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    if out.is_empty() {
        ".".into()
    } else {
        out.join("/")
    }
}

impl Ignore {
    /// Parses the file's text: one pattern a line, `#` comments, blank lines skipped.
    pub fn parse(text: &str) -> Ignore {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let (exclusion, p) = match l.strip_prefix('!') {
                    Some(p) => (true, p.trim()),
                    None => (false, l),
                };
                let c = clean(p);
                if c == "." {
                    return None;
                }
                Some(Pattern {
                    exclusion,
                    parts: c.split('/').map(str::to_string).collect(),
                })
            })
            .collect();
        Ignore { patterns }
    }

    /// True when the context path (relative, `/`-separated) is excluded.
    pub fn excludes(&self, path: &str) -> bool {
        let c = clean(path);
        if c == "." {
            return false;
        }
        let parts: Vec<&str> = c.split('/').collect();
        let mut excluded = false;
        for p in &self.patterns {
            if p.exclusion == excluded {
                // Only a pattern that could flip the answer needs checking.
                let hit = (1..=parts.len()).any(|n| match_parts(&p.parts, &parts[..n]));
                if hit {
                    excluded = !p.exclusion;
                }
            }
        }
        excluded
    }

    /// True when some `!` pattern could re-include a path below `dir`
    /// (so an excluded directory must still be walked).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }
}

fn match_parts(pat: &[String], path: &[&str]) -> bool {
    match pat.first() {
        None => path.is_empty(),
        Some(p) if p == "**" => (0..=path.len()).any(|i| match_parts(&pat[1..], &path[i..])),
        Some(p) => !path.is_empty() && glob(p, path[0]) && match_parts(&pat[1..], &path[1..]),
    }
}

/// Go's `path.Match` on one path element: `*`, `?`, `[a-z]`, `[^x]`, `\` escapes.
pub fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => (0..=s.len()).any(|i| go(&p[1..], &s[i..])),
            Some('?') => !s.is_empty() && go(&p[1..], &s[1..]),
            Some('[') => {
                let Some(c) = s.first() else { return false };
                let mut i = 1;
                let negate = matches!(p.get(1), Some('^') | Some('!'));
                if negate {
                    i += 1;
                }
                let mut hit = false;
                let mut first = true;
                while i < p.len() && (first || p[i] != ']') {
                    first = false;
                    let mut lo = p[i];
                    if lo == '\\' && i + 1 < p.len() {
                        i += 1;
                        lo = p[i];
                    }
                    let mut hi = lo;
                    if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|c| *c != ']') {
                        hi = p[i + 2];
                        i += 2;
                    }
                    if lo <= *c && *c <= hi {
                        hit = true;
                    }
                    i += 1;
                }
                if i >= p.len() {
                    return false; // unterminated class matches nothing
                }
                hit != negate && go(&p[i + 1..], &s[1..])
            }
            Some('\\') if p.len() > 1 => s.first() == Some(&p[1]) && go(&p[2..], &s[1..]),
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = name.chars().collect();
    go(&p, &s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*.go", "main.go"));
        assert!(!glob("*.go", "main.rs"));
        assert!(glob("a?c", "abc"));
        assert!(glob("[a-c]x", "bx"));
        assert!(!glob("[^a-c]x", "bx"));
        assert!(glob("[!a-c]x", "dx"));
        assert!(glob(r"\*", "*"));
        assert!(!glob(r"\*", "a"));
        assert!(!glob("[a-", "a"));
    }

    #[test]
    fn dockerignore_rules() {
        let ig = Ignore::parse(
            "# comment\n\n*.log\n/secret\nbuild/\n**/*.tmp\n!keep.log\ndocs/**/draft*\n  tmp  \n",
        );
        assert!(ig.excludes("a.log"));
        assert!(!ig.excludes("keep.log"));
        assert!(!ig.excludes("sub/a.log"), "* does not cross directories");
        assert!(ig.excludes("secret"));
        assert!(ig.excludes("secret/key"), "below an excluded directory");
        assert!(ig.excludes("build/out/bin"));
        assert!(ig.excludes("x.tmp"));
        assert!(ig.excludes("a/b/c/x.tmp"));
        assert!(ig.excludes("docs/draft1"));
        assert!(ig.excludes("docs/a/b/draft.md"));
        assert!(!ig.excludes("docs/final.md"));
        assert!(ig.excludes("tmp"));
        assert!(!ig.excludes("Dockerfile"));
        assert!(!ig.excludes("."));
        // The last match decides, so an exception can be undone again.
        let ig = Ignore::parse("*\n!app\napp/*.secret\n");
        assert!(ig.excludes("other"));
        assert!(!ig.excludes("app/main.sh"));
        assert!(ig.excludes("app/x.secret"));
        assert!(ig.has_exceptions());
        assert!(!Ignore::parse("a\n").has_exceptions());
        assert_eq!(clean("./a/../b//c/"), "b/c");
        assert_eq!(clean("/"), ".");
    }
}
