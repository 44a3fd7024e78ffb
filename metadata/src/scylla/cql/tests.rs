use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::*;

/// The pinned text: every statement, its kind and its binds.
fn rendered() -> String {
    let mut out = String::from(
        "-- Every CQL statement of metadata/src/scylla/cql.rs, pinned.\n\
         -- Regenerate with LIGHTSTREAM_PIN_STATEMENTS=1 cargo test -p metadata scylla::cql\n\
         -- and review the difference.\n",
    );
    for s in ALL {
        out.push_str(&format!(
            "\n-- {} ({:?}) binds: {}\n{};\n",
            s.name,
            s.kind,
            s.binds.join(", "),
            s.cql
        ));
    }
    out
}

#[test]
fn statements_match_the_pinned_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/scylla/statements.cql");
    let now = rendered();
    if std::env::var_os("LIGHTSTREAM_PIN_STATEMENTS").is_some() {
        std::fs::write(&path, &now).expect("write statements.cql");
    }
    let pinned = std::fs::read_to_string(&path).expect("read statements.cql");
    assert!(
        pinned == now,
        "a statement changed: regenerate {} (see its header) and review the difference",
        path.display()
    );
}

#[test]
fn every_bind_marker_is_named_and_names_are_unique() {
    let mut names = BTreeSet::new();
    for s in ALL {
        assert!(names.insert(s.name), "{} twice", s.name);
        let markers = s.cql.matches('?').count();
        assert_eq!(markers, s.binds.len(), "{}: {markers} markers", s.name);
        assert!(
            s.cql.contains("{ks}."),
            "{}: not keyspace-qualified",
            s.name
        );
    }
}

#[test]
fn conditional_statements_and_only_they_carry_a_condition_and_none_is_idempotent() {
    for s in ALL {
        let condition = s.cql.contains(" IF ");
        match s.kind {
            Kind::Conditional => {
                assert!(condition, "{}: conditional without IF", s.name);
                assert!(!s.kind.idempotent());
            }
            Kind::Schema => assert!(
                s.cql.starts_with("CREATE TABLE IF NOT EXISTS"),
                "{}",
                s.name
            ),
            _ => assert!(!condition, "{}: IF in a {:?} statement", s.name, s.kind),
        }
    }
}

/// Table name → its partition-key columns, from the CREATE statements.
fn partition_keys() -> BTreeMap<String, Vec<String>> {
    let mut keys = BTreeMap::new();
    for s in ALL.iter().filter(|s| s.kind == Kind::Schema) {
        let table = table_of(s.cql);
        let columns: Vec<String> = match s.cql.split("PRIMARY KEY (").nth(1) {
            Some(pk) => match pk.strip_prefix('(') {
                Some(inner) => inner
                    .split(')')
                    .next()
                    .expect("composite key")
                    .split(", ")
                    .map(String::from)
                    .collect(),
                None => vec![pk.split([',', ')']).next().expect("key").trim().to_string()],
            },
            // `name type PRIMARY KEY` in the column list.
            None => {
                let before = s.cql.split(" PRIMARY KEY").next().expect("primary key");
                let column = before.rsplit(['(', ',']).next().expect("column");
                vec![column.split_whitespace().next().expect("name").to_string()]
            }
        };
        keys.insert(table, columns);
    }
    keys
}

fn table_of(cql: &str) -> String {
    let at = cql.find("{ks}.").expect("table") + "{ks}.".len();
    cql[at..]
        .split([' ', '('])
        .next()
        .expect("name")
        .to_string()
}

#[test]
fn every_read_and_write_names_its_whole_partition_key() {
    let keys = partition_keys();
    for s in ALL.iter().filter(|s| s.kind != Kind::Schema) {
        let table = table_of(s.cql);
        let key = keys
            .get(&table)
            .unwrap_or_else(|| panic!("{}: no table {table}", s.name));
        if s.cql.starts_with("INSERT") {
            let columns = s.cql.split('(').nth(1).expect("columns");
            for k in key {
                assert!(columns.contains(k.as_str()), "{}: inserts no {k}", s.name);
            }
            continue;
        }
        let clause = s
            .cql
            .split(" WHERE ")
            .nth(1)
            .unwrap_or_else(|| panic!("{}: no WHERE: a scan", s.name));
        for k in key {
            assert!(
                clause.contains(&format!("{k} = ?")),
                "{}: {k} not restricted",
                s.name
            );
        }
    }
}

#[test]
fn no_table_is_written_both_conditionally_and_plainly() {
    let mut writes: BTreeMap<String, BTreeSet<bool>> = BTreeMap::new();
    for s in ALL {
        let conditional = match s.kind {
            Kind::Conditional | Kind::InConditionalBatch => true,
            Kind::IdempotentWrite | Kind::NonIdempotentWrite => false,
            Kind::Read | Kind::SerialRead | Kind::Schema => continue,
        };
        writes
            .entry(table_of(s.cql))
            .or_default()
            .insert(conditional);
    }
    for (table, kinds) in writes {
        assert_eq!(
            kinds.len(),
            1,
            "{table} is written both with and without LWT"
        );
    }
}

#[test]
fn the_keyspace_is_created_with_its_replication_and_without_tablets() {
    assert_eq!(
        create_keyspace(
            "lightstream",
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        ),
        "CREATE KEYSPACE IF NOT EXISTS lightstream WITH replication = \
         {'class': 'SimpleStrategy', 'replication_factor': 1} AND tablets = {'enabled': false}"
    );
    assert_eq!(
        text(&TOPICS_READ, "ls"),
        "SELECT name, topic_id, partition_count, configs FROM ls.topics WHERE bucket = ?"
    );
}
