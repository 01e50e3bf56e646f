//! A client that writes one row per transaction (and connection) through an endpoint of the
//! cluster while something happens to it, and the check afterwards: every acknowledged row is
//! there, and writes succeed again at the end.
//!
//! Both playbooks read `writer_host` (where the client runs), `writer_url` (a libpq URL without
//! the password), `writer_password` and, for the check, `writer_max_failed` and
//! `writer_max_lost` (acknowledged rows allowed to be missing: 0 unless replication is
//! asynchronous and the leader died).

/// Empties (or creates) table `writes` and starts the client as a transient unit.
pub const START: &str = r#"
- hosts: "{{ writer_host }}"
  gather_facts: no
  tasks:
    - command: psql "{{ writer_url }}" -Atqc "CREATE TABLE IF NOT EXISTS writes (id int PRIMARY KEY); TRUNCATE writes"
      environment: { PGPASSWORD: "{{ writer_password }}" }
    - copy:
        dest: /root/writer.env
        mode: "0600"
        content: "PGPASSWORD={{ writer_password }}\n"
    - copy:
        dest: /root/writer.sh
        mode: "0755"
        content: |
          #!/bin/bash
          # One line per attempt, in order: "ok N" or "failed N".
          i=0
          while [ ! -f /root/writer.stop ]; do
            i=$((i+1))
            if psql "{{ writer_url }}" -Atqc "INSERT INTO writes VALUES ($i)" >/dev/null 2>>/root/writer.err
            then echo "ok $i" >> /root/writer.log; else echo "failed $i" >> /root/writer.log; fi
            sleep 0.05
          done
    - shell: systemctl reset-failed pgd-writer 2>/dev/null; rm -f /root/writer.stop /root/writer.log /root/writer.err
    - command: systemd-run --unit=pgd-writer --property=EnvironmentFile=/root/writer.env /root/writer.sh
"#;

/// Stops the client; every acknowledged row is in the table (but `writer_max_lost`), at most
/// `writer_max_failed` writes failed, and the last five succeeded (writes work again).
pub const STOP: &str = r#"
- hosts: "{{ writer_host }}"
  gather_facts: no
  vars:
    acked: "{{ log.stdout_lines | select('match', '^ok ') | map('regex_replace', '^ok ', '') | list }}"
    failed: "{{ log.stdout_lines | select('match', '^failed ') | list }}"
    stored: "{{ rows.stdout.split(' ') }}"
  tasks:
    - command: touch /root/writer.stop
    - command: systemctl is-active pgd-writer
      register: w
      until: w.rc != 0
      retries: 20
      delay: 1
      failed_when: false
      changed_when: false
    - command: cat /root/writer.log
      register: log
      changed_when: false
    - command: tail -n 5 /root/writer.err
      register: err
      changed_when: false
      failed_when: false
    - command: psql "{{ writer_url }}" -Atc "SELECT string_agg(id::text, ' ' ORDER BY id) FROM writes"
      environment: { PGPASSWORD: "{{ writer_password }}" }
      register: rows
      changed_when: false
    - debug:
        msg: "writer: {{ acked | length }} acknowledged, {{ failed | length }} failed, {{ acked | reject('in', stored) | list | length }} acknowledged lost"
    - assert:
        that:
          - acked | length > 50
          - failed | length <= writer_max_failed | int
          - acked | reject('in', stored) | list | length <= writer_max_lost | default(0) | int
          - log.stdout_lines[-5:] | select('match', '^ok ') | list | length == 5
        fail_msg: >-
          acknowledged {{ acked | length }}, failed {{ failed | length }} (at most {{ writer_max_failed }}),
          missing {{ acked | reject('in', stored) | list }}, last {{ log.stdout_lines[-5:] }};
          client errors: {{ err.stdout }}
"#;
