use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn stages_args_and_names() {
    let f = parse(
        "ARG BASE=busybox\nARG TAG\nFROM ${BASE}:${TAG:-latest} AS Build\nRUN echo hi\n\
         FROM scratch\nCOPY --from=build /bin/busybox /bin/\nFROM build as final\n",
    )
    .unwrap();
    assert_eq!(f.meta_args.len(), 2);
    assert_eq!(f.meta_args[0].default.as_deref(), Some("busybox"));
    assert_eq!(f.meta_args[1].default, None);
    assert_eq!(f.stages.len(), 3);
    assert_eq!(f.stages[0].base, "${BASE}:${TAG:-latest}");
    assert_eq!(f.stages[0].name.as_deref(), Some("build"));
    assert_eq!(f.stages[0].line, 3);
    assert_eq!(f.stages[1].base, "scratch");
    assert_eq!(f.stage_index("BUILD"), Some(0));
    assert_eq!(f.stage_index("final"), Some(2));
    assert_eq!(f.stage_index("1"), Some(1));
    assert_eq!(f.stage_index("nope"), None);
    assert_eq!(f.step_count(), 5);
    let Kind::Copy(c) = &f.stages[1].instructions[0].kind else {
        panic!("not a COPY")
    };
    assert_eq!(c.from.as_deref(), Some("build"));
    let words = c
        .args
        .as_ref()
        .unwrap()
        .expand(&f.lexer(), &env(&[]))
        .unwrap();
    assert_eq!(words, vec!["/bin/busybox", "/bin/"]);
}

#[test]
fn errors_name_their_line() {
    let e = parse("FROM busybox\n\nFOO bar\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dockerfile parse error line 3: unknown instruction: FOO"
    );
    let e = parse("RUN true\nFROM busybox\n").unwrap_err();
    assert!(e.to_string().contains("line 1: no build stage"), "{e}");
    assert!(parse("").is_err());
    assert!(parse("# just a comment\n").is_err());
    assert!(parse("FROM a b\n").is_err());
    assert!(parse("FROM a AS 1x\n").is_err());
    assert!(parse("FROM a AS x\nFROM b AS x\n").is_err());
    assert!(parse("FROM a\nCOPY onlyone\n").is_err());
    assert!(parse("FROM a\nADD --from=x a b\n").is_err());
    assert!(parse("FROM a\nCOPY --bogus=1 a b\n").is_err());
    let e = parse("FROM a\nRUN --mount=type=cache,target=/x true\n").unwrap_err();
    assert!(e.to_string().contains("requires BuildKit"), "{e}");
    assert!(parse("FROM a\nSHELL /bin/sh -c\n").is_err());
    assert!(parse("FROM a\nENV\n").is_err());
    assert!(parse("FROM a\nENV ONLYKEY\n").is_err());
    assert!(parse("FROM a\nENV =x\n").is_err());
    assert!(parse("FROM a\nONBUILD ONBUILD RUN x\n").is_err());
    assert!(parse("FROM a\nONBUILD FROM b\n").is_err());
    assert!(parse("FROM a\nHEALTHCHECK --interval=abc CMD true\n").is_err());
    assert!(parse("FROM a\nHEALTHCHECK SOMETHING\n").is_err());
    assert!(parse("FROM a\nWORKDIR\n").is_err());
    assert!(parse("FROM a\nCOPY --chown a b\n").is_err());
}

#[test]
fn continuations_comments_and_directives() {
    let f = parse(
        "# syntax=docker/dockerfile:1\n# escape=`\n\nFROM busybox\n\
         RUN echo a `\n  # a comment inside\n\n  && echo b\n# comment\nRUN [\"echo\", \"c:\\\\x\"]\n",
    )
    .unwrap();
    assert_eq!(f.escape, '`');
    let i = &f.stages[0].instructions;
    assert_eq!(i.len(), 2);
    assert_eq!(i[0].original, "RUN echo a   && echo b");
    assert_eq!(i[0].line, 5);
    assert_eq!(
        i[0].kind,
        Kind::Run(Command::Shell("echo a   && echo b".into()))
    );
    assert_eq!(
        i[1].kind,
        Kind::Run(Command::Exec(vec!["echo".into(), "c:\\x".into()]))
    );
    // A directive after a blank line is only a comment.
    let f = parse("\n# escape=`\nFROM a\nRUN x \\\n y\n").unwrap();
    assert_eq!(f.escape, '\\');
    assert_eq!(
        f.stages[0].instructions[0].kind,
        Kind::Run(Command::Shell("x  y".into()))
    );
    assert!(parse("# escape=x\nFROM a\n").is_err());
    assert!(parse("# escape=`\n# escape=`\nFROM a\n").is_err());
    // A continuation at the end of the file ends the instruction.
    let f = parse("FROM a\r\nRUN echo \\\r\n").unwrap();
    assert_eq!(f.stages[0].instructions[0].original, "RUN echo");
}

#[test]
fn env_label_and_arg_forms() {
    let f = parse(
        "FROM a\nENV A=1 B=\"two words\" C=$A\nENV LEGACY some value here\n\
         LABEL \"com.x\"=y version=1.0\nARG X Y=2 Z=\"q r\"\n",
    )
    .unwrap();
    let lx = f.lexer();
    let i = &f.stages[0].instructions;
    let Kind::Env(pairs) = &i[0].kind else {
        panic!()
    };
    assert_eq!(pairs.len(), 3);
    assert_eq!(pairs[1], ("B".into(), "\"two words\"".into()));
    assert_eq!(lx.word(&pairs[1].1, &env(&[])).unwrap(), "two words");
    assert_eq!(lx.word(&pairs[2].1, &env(&[("A", "1")])).unwrap(), "1");
    assert_eq!(
        i[1].kind,
        Kind::Env(vec![("LEGACY".into(), "some value here".into())])
    );
    let Kind::Label(l) = &i[2].kind else { panic!() };
    assert_eq!(lx.word(&l[0].0, &env(&[])).unwrap(), "com.x");
    let Kind::Arg(a) = &i[3].kind else { panic!() };
    assert_eq!(
        a.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        vec!["X", "Y", "Z"]
    );
    assert_eq!(a[0].default, None);
    assert_eq!(a[2].default.as_deref(), Some("\"q r\""));
}

#[test]
fn other_instructions() {
    let f = parse(
        "FROM a\nCMD [\"sh\", \"-c\", \"echo\"]\nENTRYPOINT top -b\nSHELL [\"/bin/ash\", \"-eo\", \"pipefail\", \"-c\"]\n\
         EXPOSE 80/tcp 53/udp\nVOLUME [\"/data\", \"/logs\"]\nVOLUME /a /b\nSTOPSIGNAL SIGINT\nUSER 1000:1000\n\
         WORKDIR /srv/$APP\nHEALTHCHECK --interval=5s --timeout=1m30s --retries=3 CMD wget -q localhost || exit 1\n\
         HEALTHCHECK NONE\nonbuild run echo hi\nMAINTAINER me\nADD --chown=1:2 --chmod=600 [\"a b\", \"/c/\"]\n",
    )
    .unwrap();
    let k: Vec<&Kind> = f.stages[0].instructions.iter().map(|i| &i.kind).collect();
    assert_eq!(
        *k[0],
        Kind::Cmd(Command::Exec(vec!["sh".into(), "-c".into(), "echo".into()]))
    );
    assert_eq!(*k[1], Kind::Entrypoint(Command::Shell("top -b".into())));
    assert_eq!(
        Command::Shell("top -b".into()).argv(&["/bin/sh".into(), "-c".into()]),
        vec!["/bin/sh", "-c", "top -b"]
    );
    assert_eq!(
        *k[2],
        Kind::Shell(vec![
            "/bin/ash".into(),
            "-eo".into(),
            "pipefail".into(),
            "-c".into()
        ])
    );
    assert_eq!(*k[3], Kind::Expose("80/tcp 53/udp".into()));
    assert_eq!(
        *k[4],
        Kind::Volume(Args::Json(vec!["/data".into(), "/logs".into()]))
    );
    assert_eq!(*k[5], Kind::Volume(Args::Shell("/a /b".into())));
    assert_eq!(*k[6], Kind::StopSignal("SIGINT".into()));
    assert_eq!(*k[7], Kind::User("1000:1000".into()));
    assert_eq!(*k[8], Kind::Workdir("/srv/$APP".into()));
    assert_eq!(
        *k[9],
        Kind::Healthcheck(Health::Check {
            test: Command::Shell("wget -q localhost || exit 1".into()),
            interval: 5_000_000_000,
            timeout: 90_000_000_000,
            start_period: 0,
            start_interval: 0,
            retries: 3,
        })
    );
    assert_eq!(*k[10], Kind::Healthcheck(Health::None));
    assert_eq!(*k[11], Kind::Onbuild("RUN echo hi".into()));
    assert_eq!(*k[12], Kind::Maintainer("me".into()));
    let Kind::Add(a) = k[13] else { panic!() };
    assert_eq!(a.chown.as_deref(), Some("1:2"));
    assert_eq!(a.chmod.as_deref(), Some("600"));
    let words = a
        .args
        .as_ref()
        .unwrap()
        .expand(&f.lexer(), &env(&[]))
        .unwrap();
    assert_eq!(words, vec!["a b", "/c/"]);
    assert!(k[13].makes_layer() && !k[0].makes_layer());
}

#[test]
fn durations() {
    assert_eq!(parse_duration("30s"), Some(30_000_000_000));
    assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
    assert_eq!(parse_duration("500ms"), Some(500_000_000));
    assert_eq!(parse_duration("1.5h"), Some(5_400_000_000_000));
    assert_eq!(parse_duration("0"), Some(0));
    assert_eq!(parse_duration("10"), None);
    assert_eq!(parse_duration("s"), None);
    assert_eq!(parse_duration(""), None);
}
