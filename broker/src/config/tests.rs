#![allow(clippy::result_large_err)] // figment::Jail's closures return figment's error

use super::*;

#[test]
fn defaults_serve_localhost_9092() {
    let s = Settings::default();
    assert_eq!(s.listen, "127.0.0.1:9092");
    assert!(s.validate().is_ok());
}

#[test]
fn flags_override_file_and_environment() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("lightstream.toml", "num_partitions = 3\nnode_id = 7\n")?;
        jail.set_env("LIGHTSTREAM_NUM_PARTITIONS", "5");
        jail.set_env("LIGHTSTREAM_BIN", "/not/a/setting");
        let flags = Flags {
            listen: Some("127.0.0.1:1234".to_string()),
            ..Flags::default()
        };
        let s = Settings::load(&flags).expect("settings load").settings;
        assert_eq!(s.node_id, 7);
        assert_eq!(s.num_partitions, 5);
        assert_eq!(s.listen, "127.0.0.1:1234");
        Ok(())
    });
}

#[test]
fn storage_settings_that_would_lose_or_waste_data_are_refused() {
    let refused = |s: Settings| match s.validate() {
        Err(SettingsError::Invalid { name, .. }) => name,
        other => panic!("accepted: {other:?}"),
    };
    let d = Settings::default;
    let small_part = Settings {
        s3_part_size_bytes: 5 * 1024 * 1024 - 1,
        ..d()
    };
    assert_eq!(refused(small_part), "s3_part_size_bytes");
    let short_grace = Settings {
        object_gc_grace_ms: 299_999,
        ..d()
    };
    assert_eq!(refused(short_grace), "object_gc_grace_ms");
    let grace_under_write = Settings {
        object_write_timeout_ms: 600_000,
        s3_stale_upload_age_ms: 3_600_000,
        object_gc_grace_ms: 605_000,
        ..d()
    };
    assert_eq!(refused(grace_under_write), "object_gc_grace_ms");
    let overflow = Settings {
        object_write_timeout_ms: u64::MAX,
        ..d()
    };
    assert!(overflow.validate().is_err(), "no overflow panic, refused");
    let sweep_in_flight = Settings {
        s3_stale_upload_age_ms: 30_000,
        ..d()
    };
    assert_eq!(refused(sweep_in_flight), "s3_stale_upload_age_ms");
    let no_flushes = Settings {
        max_flushes_in_flight: 0,
        ..d()
    };
    assert_eq!(refused(no_flushes), "max_flushes_in_flight");
    // Raising a thread's priority needs privileges; 19 is the lowest.
    for niceness in [-1, 20] {
        let wrong = Settings {
            object_compaction_thread_niceness: niceness,
            ..d()
        };
        assert_eq!(refused(wrong), "object_compaction_thread_niceness");
    }
    for niceness in [0, 19] {
        let right = Settings {
            object_compaction_thread_niceness: niceness,
            ..d()
        };
        assert!(right.validate().is_ok());
    }
}

#[test]
fn metadata_settings_are_checked_before_anything_connects() {
    let refused = |s: Settings| match s.validate() {
        Err(SettingsError::Invalid { name, .. }) => name,
        other => panic!("accepted: {other:?}"),
    };
    let d = Settings::default;
    for url in [
        "postgres://db/x",
        "scylla://",
        "scylla://h:9042/bad-keyspace",
    ] {
        let wrong = Settings {
            metadata_url: url.to_string(),
            ..d()
        };
        assert_eq!(refused(wrong), "metadata_url", "{url}");
    }
    let both = Settings {
        metadata_url: "scylla://127.0.0.1:9042/lightstream".to_string(),
        metadata_password: "a".to_string(),
        metadata_password_file: "/run/secrets/scylla".to_string(),
        ..d()
    };
    assert_eq!(refused(both), "metadata_password_file");
    let fine = Settings {
        metadata_url: "scylla://u@10.0.0.1:9042,10.0.0.2/lightstream?dc=dc1".to_string(),
        metadata_password_file: "/run/secrets/scylla".to_string(),
        ..d()
    };
    fine.validate()
        .expect("a ScyllaDB URL with a password file");
}

#[test]
fn unknown_file_keys_are_rejected() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("lightstream.toml", "no_such_setting = 1\n")?;
        assert!(Settings::load(&Flags::default()).is_err());
        Ok(())
    });
}

#[test]
fn a_listener_may_be_a_host_name() {
    let s = Settings {
        listen: "localhost:9092".to_string(),
        admin_listen: "[::1]:9080".to_string(),
        ..Settings::default()
    };
    s.validate()
        .expect("localhost:9092 and [::1]:9080 are listen addresses");
    for wrong in ["9092", "localhost", ":9092", "localhost:99999"] {
        let s = Settings {
            listen: wrong.to_string(),
            ..Settings::default()
        };
        assert!(s.validate().is_err(), "{wrong} accepted");
    }
}

#[test]
fn settings_that_contradict_each_other_are_refused() {
    let s = Settings {
        group_min_session_timeout_ms: 60_000,
        group_max_session_timeout_ms: 30_000,
        ..Settings::default()
    };
    match s.validate() {
        Err(SettingsError::Invalid { name, .. }) => {
            assert_eq!(name, "group_min_session_timeout_ms")
        }
        other => panic!("accepted: {other:?}"),
    }
}

#[test]
fn an_unknown_variable_is_a_warning_naming_the_closest_setting() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("LIGHTSTREAM_FLUSH_INTERVAL", "5");
        jail.set_env("LIGHTSTREAM_BIN", "/a/tool/variable");
        jail.set_env("LIGHTSTREAM_ZZZZZZZZZZZZZZZZZZ", "1");
        let loaded = Settings::load(&Flags::default()).expect("a warning, not an error");
        let near = loaded
            .warnings
            .iter()
            .find(|w| w.contains("LIGHTSTREAM_FLUSH_INTERVAL "))
            .expect("a warning for the misspelt variable");
        assert!(near.contains("LIGHTSTREAM_FLUSH_INTERVAL_MS"), "{near}");
        assert!(
            loaded.warnings.iter().any(|w| w.contains("ZZZZ")),
            "{:?}",
            loaded.warnings
        );
        assert!(
            !loaded
                .warnings
                .iter()
                .any(|w| w.contains("LIGHTSTREAM_BIN")),
            "tool variables are not settings: {:?}",
            loaded.warnings
        );
        Ok(())
    });
}

#[test]
fn errors_name_the_setting_as_its_source_spells_it() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("lightstream.toml", "num_partitions = \"three\"\n")?;
        let e = Settings::load(&Flags::default()).expect_err("a string is not a count");
        let shown = e.to_string();
        assert!(shown.contains("num_partitions"), "{shown}");
        assert!(!shown.contains("default."), "{shown}");
        assert_eq!(shown.lines().count(), 1, "one problem, one line: {shown}");

        jail.create_file("lightstream.toml", "flush_interval = 5\n")?;
        let shown = Settings::load(&Flags::default()).unwrap_err().to_string();
        assert!(shown.contains("flush_interval is not a setting"), "{shown}");
        assert!(shown.contains("did you mean flush_interval_ms"), "{shown}");

        jail.create_file("lightstream.toml", "")?;
        jail.set_env("LIGHTSTREAM_NODE_ID", "one");
        let shown = Settings::load(&Flags::default()).unwrap_err().to_string();
        assert!(shown.contains("LIGHTSTREAM_NODE_ID"), "{shown}");
        Ok(())
    });
}

#[test]
fn check_config_output_masks_secrets_and_loads_back() {
    let s = Settings {
        s3_access_key_id: "AKIAEXAMPLE".to_string(),
        s3_secret_access_key: "wJalrXUtnFEMI".to_string(),
        metadata_url: "scylla://app:hunter2@10.0.0.1:9042/lightstream".to_string(),
        metadata_password: "hunter3".to_string(),
        ..Settings::default()
    };
    let shown = s.masked_toml();
    for secret in ["wJalrXUtnFEMI", "hunter2", "hunter3"] {
        assert!(!shown.contains(secret), "{secret} printed:\n{shown}");
    }
    assert!(shown.contains("scylla://app:****@10.0.0.1:9042/lightstream"));
    let back: Settings = toml::from_str(&shown).expect("the output is a settings file");
    assert_eq!(back.s3_access_key_id, "AKIAEXAMPLE");
    assert_eq!(back.listen, s.listen);
}

#[test]
fn help_shows_every_flags_default() {
    let help = Flags::command_with_defaults()
        .render_long_help()
        .to_string();
    let defaults = Settings::default();
    for expected in [
        format!("[default: {}]", defaults.listen),
        format!("[default: {}]", defaults.admin_listen),
        format!("[default: {}]", defaults.data_dir.display()),
        format!("[default: {}]", defaults.num_partitions),
        format!("[default: {}]", defaults.flush_interval_ms),
        format!("[default: {}]", defaults.log_format),
    ] {
        assert!(help.contains(&expected), "{expected} missing from:\n{help}");
    }
    let flags =
        Flags::parse_from_args(["lightstream", "--listen", "localhost:9093"]).expect("flags parse");
    assert_eq!(flags.listen.as_deref(), Some("localhost:9093"));
}

/// docs/configuration.md and the sample settings file name every setting,
/// and the sample, uncommented, is exactly the defaults.
#[test]
fn every_setting_is_documented_and_sampled() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let docs = std::fs::read_to_string(root.join("docs/configuration.md")).expect("docs");
    let sample = std::fs::read_to_string(root.join("docs/lightstream.toml")).expect("sample");
    for name in setting_names() {
        let quoted = format!("`{name}`");
        assert!(
            docs.lines().any(|row| row.starts_with("| `")
                && row
                    .split('|')
                    .nth(1)
                    .is_some_and(|cell| cell.contains(&quoted))),
            "{name} has no row in docs/configuration.md"
        );
        assert!(
            sample.contains(&format!("# {name} = ")),
            "{name} is not in docs/lightstream.toml"
        );
    }
    // Settings derived at start (advertised_host) have an example, not a default.
    let with_defaults = format!("\n{}", Settings::default().masked_toml());
    let uncommented: String = sample
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            l.split_once(" = ")
                .is_some_and(|(k, _)| with_defaults.contains(&format!("\n{k} = ")))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let parsed: Settings = toml::from_str(&uncommented).expect("the sample parses");
    assert_eq!(parsed, Settings::default(), "the sample shows the defaults");
}
