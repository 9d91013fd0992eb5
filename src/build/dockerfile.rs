//! The Dockerfile parser: parser directives (`# escape=`, `# syntax=`),
//! comments, line continuations, and every instruction of Docker's classic
//! builder, split into stages. Arguments are kept as written (quotes and
//! `$VAR`s included) and resolved by [`super::shell::Lexer`] when their step
//! runs, because the variables they see depend on the ENV and ARG steps
//! before them.

use super::shell::{Env, Lexer};
use super::Error;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    /// The escape character (`\` unless the `escape` directive says `` ` ``).
    pub escape: char,
    /// ARGs before the first FROM: usable in FROM lines, and in a stage
    /// that declares them again without a default.
    pub meta_args: Vec<ArgDecl>,
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    /// The lexer for this file's arguments.
    pub fn lexer(&self) -> Lexer {
        Lexer {
            escape: self.escape,
        }
    }

    /// Steps in all stages (each FROM counts), as `Step N/M` numbers them.
    pub fn step_count(&self) -> usize {
        self.stages.iter().map(|s| 1 + s.instructions.len()).sum()
    }

    /// The index of the stage named `name` (case-insensitive) or numbered so.
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| {
                name.parse::<usize>()
                    .ok()
                    .filter(|i| *i < self.stages.len())
            })
    }
}

/// `ARG NAME[=default]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgDecl {
    pub name: String,
    /// The default as written (resolved when the step runs).
    pub default: Option<String>,
}

/// One `FROM` and the instructions up to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// The base image as written (may hold `$ARG`s).
    pub base: String,
    /// The `AS` name, lower-cased.
    pub name: Option<String>,
    pub platform: Option<String>,
    pub line: usize,
    /// The FROM line as the step message shows it.
    pub original: String,
    pub instructions: Vec<Instruction>,
}

/// An instruction with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    pub line: usize,
    /// The logical line (continuations joined), for `Step N/M : …` and history.
    pub original: String,
    pub kind: Kind,
}

/// A command in shell form (run through SHELL) or exec form (JSON array).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

impl Command {
    fn parse(rest: &str) -> Command {
        match json_array(rest) {
            Some(v) => Command::Exec(v),
            None => Command::Shell(rest.to_string()),
        }
    }

    /// The argv to run, with `shell` for the shell form.
    pub fn argv(&self, shell: &[String]) -> Vec<String> {
        match self {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => shell.iter().cloned().chain([s.clone()]).collect(),
        }
    }
}

/// Arguments that are a JSON array or words in shell form.
#[derive(Debug, Clone, PartialEq)]
pub enum Args {
    Shell(String),
    Json(Vec<String>),
}

impl Args {
    fn parse(rest: &str) -> Args {
        match json_array(rest) {
            Some(v) => Args::Json(v),
            None => Args::Shell(rest.to_string()),
        }
    }

    /// The words with variables resolved (JSON elements keep their quotes).
    pub fn expand(&self, lexer: &Lexer, env: &dyn Env) -> Result<Vec<String>, Error> {
        match self {
            Args::Shell(s) => lexer.words(s, env),
            Args::Json(v) => v
                .iter()
                .map(|w| lexer.word(&lexer.protect_quotes(w), env))
                .collect(),
        }
    }

    fn len(&self, lexer: &Lexer) -> usize {
        match self {
            Args::Shell(s) => lexer.split_raw(s).len(),
            Args::Json(v) => v.len(),
        }
    }
}

/// COPY or ADD.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CopySpec {
    /// `--from=stage|image` (COPY only).
    pub from: Option<String>,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=0755`.
    pub chmod: Option<String>,
    /// Sources and, last, the destination.
    pub args: Option<Args>,
}

/// HEALTHCHECK.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    /// `HEALTHCHECK NONE`: the base image's check is disabled.
    None,
    Check {
        test: Command,
        /// Nanoseconds, 0 = inherit / Docker's default.
        interval: i64,
        timeout: i64,
        start_period: i64,
        start_interval: i64,
        retries: i64,
    },
}

/// What an instruction does.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Run(Command),
    Cmd(Command),
    Entrypoint(Command),
    /// The SHELL's argv (JSON form only).
    Shell(Vec<String>),
    Copy(CopySpec),
    Add(CopySpec),
    /// name=value pairs as written.
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Arg(Vec<ArgDecl>),
    Workdir(String),
    User(String),
    Expose(String),
    Volume(Args),
    StopSignal(String),
    Healthcheck(Health),
    /// The trigger as stored in the image (`RUN echo hi`, keyword upper-cased).
    Onbuild(String),
    Maintainer(String),
}

impl Kind {
    /// True for the steps that always make a filesystem layer (WORKDIR makes
    /// one only when its directory is missing).
    pub fn makes_layer(&self) -> bool {
        matches!(self, Kind::Run(_) | Kind::Copy(_) | Kind::Add(_))
    }
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, Error> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let (escape, first) = directives(&lines)?;
    let lexer = Lexer { escape };
    let mut file = Dockerfile {
        escape,
        meta_args: vec![],
        stages: vec![],
    };
    for (line, logical) in logical_lines(&lines[first..], escape, first) {
        let (word, rest) = split_keyword(&logical);
        let keyword = word.to_ascii_uppercase();
        let at = |e: Error| e.at_line(line);
        if keyword == "FROM" {
            let stage = parse_from(rest, line, &logical).map_err(at)?;
            if let Some(n) = &stage.name {
                if file.stages.iter().any(|s| s.name.as_ref() == Some(n)) {
                    return Err(Error::syntax(format!("duplicate stage name {n:?}")).at_line(line));
                }
            }
            file.stages.push(stage);
            continue;
        }
        let kind = parse_instruction(&keyword, rest, &lexer).map_err(at)?;
        match (file.stages.last_mut(), kind) {
            (None, Kind::Arg(decls)) => file.meta_args.extend(decls),
            (None, _) => {
                return Err(Error::syntax(format!(
                    "no build stage in current context: {keyword} before the first FROM"
                ))
                .at_line(line))
            }
            (Some(stage), kind) => stage.instructions.push(Instruction {
                line,
                original: logical.clone(),
                kind,
            }),
        }
    }
    if file.stages.is_empty() {
        return Err(Error::syntax(
            "the Dockerfile (Dockerfile) cannot be empty: it needs a FROM",
        ));
    }
    Ok(file)
}

/// The parser directives at the top; returns the escape character and the
/// index of the first line after them.
fn directives(lines: &[&str]) -> Result<(char, usize), Error> {
    let mut escape = None;
    let mut seen = std::collections::HashSet::new();
    for (i, l) in lines.iter().enumerate() {
        let Some((key, value)) = directive(l) else {
            return Ok((escape.unwrap_or('\\'), i));
        };
        if !seen.insert(key.clone()) {
            return Err(
                Error::syntax(format!("only one {key} parser directive can be used"))
                    .at_line(i + 1),
            );
        }
        if key == "escape" {
            escape = Some(match value.as_str() {
                "\\" => '\\',
                "`" => '`',
                v => {
                    return Err(Error::syntax(format!(
                        "invalid escape token '{v}' does not match ` or \\"
                    ))
                    .at_line(i + 1))
                }
            });
        }
        // `syntax` (a BuildKit frontend) and `check` mean nothing here.
    }
    Ok((escape.unwrap_or('\\'), lines.len()))
}

/// `# key=value`, as a directive line is written.
fn directive(line: &str) -> Option<(String, String)> {
    let body = line.trim().strip_prefix('#')?;
    let (k, v) = body.split_once('=')?;
    let k = k.trim();
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some((k.to_ascii_lowercase(), v.trim().to_string()))
}

/// Logical lines with the (1-based) number of their first physical line:
/// comments and blank lines dropped, continuations joined.
fn logical_lines(lines: &[&str], escape: char, offset: usize) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, raw) in lines.iter().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            // Also inside a continuation: Docker skips them there.
            continue;
        }
        let body = raw.trim_end();
        let (part, continues) = match body.strip_suffix(escape) {
            Some(p) => (p, true),
            None => (body, false),
        };
        let entry = cur.get_or_insert_with(|| (offset + i + 1, String::new()));
        if entry.1.is_empty() {
            entry.1.push_str(part.trim_start());
        } else {
            entry.1.push_str(part);
        }
        if !continues {
            if let Some((n, s)) = cur.take() {
                out.push((n, s.trim().to_string()));
            }
        }
    }
    if let Some((n, s)) = cur.take() {
        if !s.trim().is_empty() {
            out.push((n, s.trim().to_string()));
        }
    }
    out
}

fn split_keyword(line: &str) -> (&str, &str) {
    match line.find(char::is_whitespace) {
        Some(i) => (&line[..i], line[i..].trim()),
        None => (line, ""),
    }
}

/// `--name[=value]` flags as given.
type Flags = Vec<(String, Option<String>)>;

/// Leading `--name[=value]` flags, the only ones `allowed`.
fn flags<'a>(rest: &'a str, allowed: &[&str]) -> Result<(Flags, &'a str), Error> {
    let mut out = Vec::new();
    let mut r = rest.trim_start();
    while let Some(f) = r.strip_prefix("--") {
        let end = f.find(char::is_whitespace).unwrap_or(f.len());
        let flag = &f[..end];
        if flag.is_empty() {
            break;
        }
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        match name {
            "mount" | "network" | "security" | "link" | "parents" | "exclude" | "keep-git-dir"
            | "checksum"
                if !allowed.contains(&name) =>
            {
                return Err(Error::syntax(format!(
                    "the --{name} option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled"
                )))
            }
            n if !allowed.contains(&n) => {
                return Err(Error::syntax(format!("unknown flag: {n}")));
            }
            _ => {}
        }
        out.push((name.to_string(), value));
        r = f[end..].trim_start();
    }
    Ok((out, r))
}

fn flag_value(flags: &[(String, Option<String>)], name: &str) -> Result<Option<String>, Error> {
    match flags.iter().rev().find(|(n, _)| n == name) {
        None => Ok(None),
        Some((_, Some(v))) => Ok(Some(v.clone())),
        Some((_, None)) => Err(Error::syntax(format!("missing a value on flag: {name}"))),
    }
}

fn parse_from(rest: &str, line: usize, original: &str) -> Result<Stage, Error> {
    let (fl, rest) = flags(rest, &["platform"])?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    let (base, name) = match words.as_slice() {
        [base] => (base.to_string(), None),
        [base, as_, name] if as_.eq_ignore_ascii_case("as") => {
            let name = name.to_ascii_lowercase();
            if !valid_stage_name(&name) {
                return Err(Error::syntax(format!(
                    "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                )));
            }
            (base.to_string(), Some(name))
        }
        [] => return Err(Error::syntax("FROM requires either one or three arguments")),
        _ => return Err(Error::syntax("FROM requires either one or three arguments")),
    };
    Ok(Stage {
        base,
        name,
        platform: flag_value(&fl, "platform")?,
        line,
        original: original.to_string(),
        instructions: vec![],
    })
}

fn valid_stage_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase())
        && c.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn require(keyword: &str, rest: &str) -> Result<(), Error> {
    if rest.trim().is_empty() {
        return Err(Error::syntax(format!(
            "{keyword} requires at least one argument"
        )));
    }
    Ok(())
}

fn parse_instruction(keyword: &str, rest: &str, lexer: &Lexer) -> Result<Kind, Error> {
    Ok(match keyword {
        "RUN" => {
            let (_, rest) = flags(rest, &[])?;
            require(keyword, rest)?;
            Kind::Run(Command::parse(rest))
        }
        "CMD" => {
            require(keyword, rest)?;
            Kind::Cmd(Command::parse(rest))
        }
        "ENTRYPOINT" => {
            require(keyword, rest)?;
            Kind::Entrypoint(Command::parse(rest))
        }
        "SHELL" => match json_array(rest) {
            Some(v) if !v.is_empty() => Kind::Shell(v),
            _ => {
                return Err(Error::syntax(
                    "SHELL requires the arguments to be in JSON form",
                ))
            }
        },
        "COPY" | "ADD" => {
            let allowed: &[&str] = if keyword == "COPY" {
                &["from", "chown", "chmod"]
            } else {
                &["chown", "chmod"]
            };
            let (fl, rest) = flags(rest, allowed)?;
            let args = Args::parse(rest);
            if args.len(lexer) < 2 {
                return Err(Error::syntax(format!(
                    "{keyword} requires at least two arguments, but only {} provided",
                    args.len(lexer)
                )));
            }
            let spec = CopySpec {
                from: flag_value(&fl, "from")?,
                chown: flag_value(&fl, "chown")?,
                chmod: flag_value(&fl, "chmod")?,
                args: Some(args),
            };
            if keyword == "COPY" {
                Kind::Copy(spec)
            } else {
                Kind::Add(spec)
            }
        }
        "ENV" => Kind::Env(name_values(keyword, rest, lexer)?),
        "LABEL" => Kind::Label(name_values(keyword, rest, lexer)?),
        "ARG" => {
            require(keyword, rest)?;
            let decls = lexer
                .split_raw(rest)
                .into_iter()
                .map(|w| {
                    let (name, default) = match w.split_once('=') {
                        Some((n, d)) => (n.to_string(), Some(d.to_string())),
                        None => (w, None),
                    };
                    if name.is_empty() {
                        return Err(Error::syntax("ARG names can not be blank"));
                    }
                    Ok(ArgDecl { name, default })
                })
                .collect::<Result<_, _>>()?;
            Kind::Arg(decls)
        }
        "WORKDIR" => {
            require(keyword, rest)?;
            Kind::Workdir(rest.to_string())
        }
        "USER" => {
            require(keyword, rest)?;
            Kind::User(rest.to_string())
        }
        "EXPOSE" => {
            require(keyword, rest)?;
            Kind::Expose(rest.to_string())
        }
        "VOLUME" => {
            require(keyword, rest)?;
            Kind::Volume(Args::parse(rest))
        }
        "STOPSIGNAL" => {
            require(keyword, rest)?;
            Kind::StopSignal(rest.to_string())
        }
        "MAINTAINER" => {
            require(keyword, rest)?;
            Kind::Maintainer(rest.to_string())
        }
        "HEALTHCHECK" => Kind::Healthcheck(parse_health(rest)?),
        "ONBUILD" => {
            let (word, inner) = split_keyword(rest);
            let kw = word.to_ascii_uppercase();
            match kw.as_str() {
                "" => return Err(Error::syntax("ONBUILD requires at least one argument")),
                "ONBUILD" => {
                    return Err(Error::syntax(
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                    ))
                }
                "FROM" | "MAINTAINER" => {
                    return Err(Error::syntax(format!(
                        "{kw} isn't allowed as an ONBUILD trigger"
                    )))
                }
                _ => {}
            }
            parse_instruction(&kw, inner, lexer)?;
            Kind::Onbuild(format!("{kw} {inner}").trim_end().to_string())
        }
        other => return Err(Error::syntax(format!("unknown instruction: {other}"))),
    })
}

/// `k=v k2="v 2"` or the legacy `k v with spaces` (one pair).
fn name_values(keyword: &str, rest: &str, lexer: &Lexer) -> Result<Vec<(String, String)>, Error> {
    require(keyword, rest)?;
    let words = lexer.split_raw(rest);
    if !words[0].contains('=') {
        // Legacy form: the first word is the name, the rest the value.
        let (name, value) = split_keyword(rest);
        if value.is_empty() {
            return Err(Error::syntax(format!("{keyword} must have two arguments")));
        }
        return Ok(vec![(name.to_string(), value.to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(Error::syntax(format!("{keyword} names can not be blank"))),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(Error::syntax(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            ))),
        })
        .collect()
}

fn parse_health(rest: &str) -> Result<Health, Error> {
    let (fl, rest) = flags(
        rest,
        &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
    )?;
    let (word, cmd) = split_keyword(rest);
    match word.to_ascii_uppercase().as_str() {
        "NONE" if cmd.is_empty() && fl.is_empty() => Ok(Health::None),
        "NONE" => Err(Error::syntax("HEALTHCHECK NONE takes no arguments")),
        "CMD" => {
            if cmd.is_empty() {
                return Err(Error::syntax("Missing command after HEALTHCHECK CMD"));
            }
            let dur = |n: &str| -> Result<i64, Error> {
                match flag_value(&fl, n)? {
                    None => Ok(0),
                    Some(v) => parse_duration(&v)
                        .ok_or_else(|| Error::syntax(format!("invalid duration for --{n}: {v:?}"))),
                }
            };
            let retries = match flag_value(&fl, "retries")? {
                None => 0,
                Some(v) => v
                    .parse::<i64>()
                    .ok()
                    .filter(|r| *r >= 0)
                    .ok_or_else(|| Error::syntax(format!("invalid --retries value {v:?}")))?,
            };
            Ok(Health::Check {
                test: Command::parse(cmd),
                interval: dur("interval")?,
                timeout: dur("timeout")?,
                start_period: dur("start-period")?,
                start_interval: dur("start-interval")?,
                retries,
            })
        }
        other => Err(Error::syntax(format!(
            "Unknown type {other:?} in HEALTHCHECK (try CMD)"
        ))),
    }
}

/// Go's `time.ParseDuration` for the units Dockerfiles use: `1m30s`,
/// `500ms`, `2h`, `1.5s`; nanoseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += num * scale;
        rest = &rest[unit_end..];
    }
    Some(total as i64)
}

/// A JSON array of strings, if `s` is one.
fn json_array(s: &str) -> Option<Vec<String>> {
    let t = s.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

#[cfg(test)]
mod tests;
