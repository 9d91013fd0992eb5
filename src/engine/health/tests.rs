use super::*;

const S: i64 = 1_000_000_000;

fn cfg(test: &[&str]) -> HealthConfig {
    HealthConfig {
        test: test.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn result(start: i64, code: i64) -> ProbeResult {
    ProbeResult {
        start,
        end: start + 1,
        exit_code: code,
        output: format!("exit {code}"),
    }
}

#[test]
fn request_fields_override_the_image_and_zeros_inherit() {
    let image = HealthConfig {
        interval: 10 * S,
        timeout: 2 * S,
        retries: 5,
        ..cfg(&["CMD-SHELL", "wget -q localhost"])
    };
    // No check in the request: the image's.
    assert_eq!(HealthConfig::merge(None, Some(&image)), Some(image.clone()));
    // Only an interval in the request (`--health-interval`): the rest inherited.
    let req = HealthConfig {
        interval: S,
        ..Default::default()
    };
    let m = HealthConfig::merge(Some(req), Some(&image)).unwrap();
    assert_eq!(m.test, image.test);
    assert_eq!((m.interval, m.timeout, m.retries), (S, 2 * S, 5));
    // A command of the request's own replaces the image's.
    let m = HealthConfig::merge(Some(cfg(&["CMD", "true"])), Some(&image)).unwrap();
    assert_eq!(m.test, ["CMD", "true"]);
    assert_eq!(m.interval, 10 * S);
    // `--no-healthcheck`: NONE stays and disables.
    let m = HealthConfig::merge(Some(cfg(&["NONE"])), Some(&image)).unwrap();
    assert!(!m.enabled());
    assert_eq!(HealthConfig::merge(None, None), None);
    assert!(HealthConfig::merge(Some(cfg(&["CMD", "true"])), None)
        .unwrap()
        .enabled());
}

#[test]
fn probe_commands_and_defaults() {
    assert_eq!(
        cfg(&["CMD", "true", "x"]).probe_argv(&[]).unwrap(),
        ["true", "x"]
    );
    assert_eq!(
        cfg(&["CMD-SHELL", "exit 3"]).probe_argv(&[]).unwrap(),
        ["/bin/sh", "-c", "exit 3"]
    );
    let bash = vec!["/bin/bash".to_string(), "-ec".to_string()];
    assert_eq!(
        cfg(&["CMD-SHELL", "x"]).probe_argv(&bash).unwrap(),
        ["/bin/bash", "-ec", "x"]
    );
    for off in [&["NONE"][..], &[], &["CMD"], &["WHAT", "x"]] {
        assert!(cfg(off).probe_argv(&[]).is_none(), "{off:?}");
    }
    let c = cfg(&["CMD", "true"]);
    assert_eq!(c.interval(), DEFAULT_INTERVAL);
    assert_eq!(c.timeout(), DEFAULT_TIMEOUT);
    assert_eq!(c.retries(), 3);
    assert_eq!(c.start_period(), Duration::ZERO);
}

#[test]
fn validation_refuses_what_docker_refuses() {
    assert!(cfg(&["CMD", "true"]).validate().is_ok());
    let bad = HealthConfig {
        interval: 10,
        ..cfg(&["CMD", "true"])
    };
    assert!(bad.validate().unwrap_err().to_string().contains("Interval"));
    let bad = HealthConfig {
        retries: -1,
        ..cfg(&["CMD", "true"])
    };
    assert!(bad.validate().unwrap_err().to_string().contains("negative"));
}

#[test]
fn docker_json_round_trips_with_nulls_and_omits_zeros() {
    let c: HealthConfig = serde_json::from_str(
        r#"{"Test":["CMD-SHELL","true"],"Interval":1000000000,"Timeout":null,"Retries":2}"#,
    )
    .unwrap();
    assert_eq!((c.interval, c.timeout, c.retries), (S, 0, 2));
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        serde_json::json!({"Test":["CMD-SHELL","true"],"Interval":1000000000,"Retries":2})
    );
}

#[test]
fn retries_failures_make_unhealthy_and_a_success_heals() {
    let c = HealthConfig {
        retries: 2,
        ..cfg(&["CMD", "false"])
    };
    let mut h = HealthState::started(None);
    assert!(!h.record(result(S, 1), &c, 0));
    assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 1));
    assert!(h.record(result(2 * S, 1), &c, 0));
    assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 2));
    assert!(!h.record(result(3 * S, 7), &c, 0));
    assert_eq!(h.failing_streak, 3);
    assert!(h.record(result(4 * S, 0), &c, 0));
    assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
    // healthy → unhealthy takes `retries` failures again.
    assert!(!h.record(result(5 * S, 1), &c, 0));
    assert_eq!(h.status, HealthStatus::Healthy);
    assert!(h.record(result(6 * S, 1), &c, 0));
    assert_eq!(h.status, HealthStatus::Unhealthy);
}

#[test]
fn failures_in_the_start_period_do_not_count_until_a_success() {
    let c = HealthConfig {
        retries: 1,
        start_period: 10 * S,
        ..cfg(&["CMD", "x"])
    };
    let started = 100 * S;
    let mut h = HealthState::started(None);
    h.record(result(started + S, 1), &c, started);
    h.record(result(started + 2 * S, 1), &c, started);
    assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 0));
    // After the period a failure counts.
    assert!(h.record(result(started + 11 * S, 1), &c, started));
    assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 1));
    // A success inside the period ends it: the next failure counts.
    let mut h = HealthState::started(None);
    h.record(result(started + S, 0), &c, started);
    assert!(h.record(result(started + 2 * S, 1), &c, started));
    assert_eq!(h.status, HealthStatus::Unhealthy);
}

#[test]
fn the_log_keeps_the_last_five_and_a_restart_keeps_it() {
    let c = cfg(&["CMD", "x"]);
    let mut h = HealthState::started(None);
    for i in 0..8 {
        h.record(result(i * S, i), &c, 0);
    }
    assert_eq!(h.log.len(), MAX_LOG);
    assert_eq!(h.log[0].exit_code, 3);
    assert_eq!(h.log[4].exit_code, 7);
    let again = HealthState::started(Some(h.clone()));
    assert_eq!(
        (again.status, again.failing_streak),
        (HealthStatus::Starting, 0)
    );
    assert_eq!(again.log, h.log);
}

#[test]
fn waits_follow_the_start_period_and_interval() {
    let c = HealthConfig {
        interval: 30 * S,
        start_period: 60 * S,
        start_interval: 2 * S,
        ..cfg(&["CMD", "x"])
    };
    let secs = Duration::from_secs;
    assert_eq!(c.next_wait(secs(0), HealthStatus::Starting), secs(2));
    assert_eq!(c.next_wait(secs(0), HealthStatus::Healthy), secs(30));
    assert_eq!(c.next_wait(secs(50), HealthStatus::Starting), secs(10));
    assert_eq!(c.next_wait(secs(61), HealthStatus::Starting), secs(30));
    // No start period: the interval from the start on.
    assert_eq!(
        cfg(&["CMD", "x"]).next_wait(secs(0), HealthStatus::Starting),
        secs(30)
    );
}

#[test]
fn output_is_cut_as_docker_cuts_it() {
    assert_eq!(limited_output(b"ok\n", false), "ok\n");
    let big = vec![b'a'; MAX_OUTPUT + 10];
    let s = limited_output(&big, false);
    assert_eq!(s.len(), MAX_OUTPUT + 3);
    assert!(s.ends_with("a..."));
    assert_eq!(limited_output(b"x", true), "x...");
}

#[test]
fn go_durations() {
    let ms = Duration::from_millis;
    assert_eq!(go_duration(ms(30_000)), "30s");
    assert_eq!(go_duration(ms(1_500)), "1.5s");
    assert_eq!(go_duration(ms(500)), "500ms");
    assert_eq!(go_duration(ms(90_000)), "1m30s");
    assert_eq!(go_duration(ms(3_600_000)), "1h0m0s");
    assert_eq!(go_duration(Duration::ZERO), "0s");
}
