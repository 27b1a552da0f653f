// Copyright the ptkit authors. MIT license.

// The README's Prometheus configuration and alerting rules, as an operator
// copies them: `promtool check config` (which checks the rule file too),
// `promtool check rules`, and each of the four alerts fired (or not) on
// synthetic series with `promtool test rules`. promtool is in Debian's
// `prometheus`.

import { ok, strictEqual } from "node:assert";
import { requireBinary } from "./ipc_util.ts";

const README = new URL("../README.md", import.meta.url);

/** The README's fenced YAML block whose first line is `# <name>`. */
function readmeBlock(name: string): string {
  const text = Deno.readTextFileSync(README);
  const start = text.indexOf("```yaml\n# " + name + "\n");
  ok(start >= 0, `README has no yaml block for ${name}`);
  const body = text.slice(start + "```yaml\n".length);
  return body.slice(0, body.indexOf("```\n"));
}

async function promtool(args: string[], cwd: string): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command(requireBinary("promtool", "prometheus"), {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const said = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  strictEqual(code, 0, `promtool ${args.join(" ")} failed:\n${said}`);
  return said;
}

Deno.test("the README's scrape config and alerting rules pass promtool check config and check rules", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/prometheus.yml`, readmeBlock("prometheus.yml"));
    await Deno.writeTextFile(`${dir}/ptkit.rules.yml`, readmeBlock("ptkit.rules.yml"));
    const config = await promtool(["check", "config", "prometheus.yml"], dir);
    ok(/SUCCESS: 4 rules found/.test(config), config);
    const rules = await promtool(["check", "rules", "ptkit.rules.yml"], dir);
    ok(/SUCCESS: 4 rules found/.test(rules), rules);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const LABELS = 'instance="b",job="ptkit",transport="obfs4"';
const SERVER = `${LABELS},side="server",mode="transparent-TCP"`;

// Synthetic series, one minute apart: a day without failed handshakes then
// ten a minute (probing) on one bridge, one a minute all day long on another;
// 900 connections open under a 1024-descriptor limit; two UDP drops a second;
// bytes that stop moving.
const RULE_TESTS = `
rule_files:
  - ptkit.rules.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'ptkit_connections_total{${SERVER},outcome="handshake_failed"}'
        values: '0x1440 0+10x60'
      - series: 'ptkit_connections_total{instance="steady",job="ptkit",transport="obfs4",side="server",mode="transparent-TCP",outcome="probe_delay_closed"}'
        values: '0+1x1500'
    alert_rule_test:
      - eval_time: 1d50m
        alertname: PtkitHandshakeFailuresSpiking
        exp_alerts:
          - exp_labels: { severity: warning, instance: b, transport: obfs4 }
            exp_annotations:
              summary: "b (obfs4): failed handshakes are spiking; the bridge is probably being probed"
      - eval_time: 1d
        alertname: PtkitHandshakeFailuresSpiking
        exp_alerts: []
  - interval: 1m
    input_series:
      - series: 'ptkit_connections_open{${SERVER}}'
        values: '900x20'
      - series: 'process_max_fds{instance="b",job="ptkit"}'
        values: '1024x20'
      - series: 'process_open_fds{instance="b",job="ptkit"}'
        values: '1810x20'
      - series: 'ptkit_udp_dropped_total{${LABELS},side="client",mode="transparent-UDP",reason="congested"}'
        values: '0+120x30'
      - series: 'ptkit_bytes_total{${SERVER},direction="received"}'
        values: '0+1000x10 10000x80'
    alert_rule_test:
      - eval_time: 3m
        alertname: PtkitConnectionsNearFdLimit
        exp_alerts: []
      - eval_time: 10m
        alertname: PtkitConnectionsNearFdLimit
        exp_alerts:
          - exp_labels: { severity: critical, instance: b, job: ptkit }
            exp_annotations:
              summary: "b: open connections are near the file descriptor limit"
      - eval_time: 20m
        alertname: PtkitUdpDrops
        exp_alerts:
          - exp_labels: { severity: warning, instance: b, transport: obfs4, side: client, reason: congested }
            exp_annotations:
              summary: "b: datagrams dropped (congested)"
      - eval_time: 30m
        alertname: PtkitNoTraffic
        exp_alerts: []
      - eval_time: 85m
        alertname: PtkitNoTraffic
        exp_alerts:
          - exp_labels: { severity: warning, instance: b, job: ptkit }
            exp_annotations:
              summary: "b: no bytes through any transport for an hour"
`;

Deno.test("each README alert fires on the series it is for, and not on normal ones (promtool test rules)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/ptkit.rules.yml`, readmeBlock("ptkit.rules.yml"));
    await Deno.writeTextFile(`${dir}/tests.yml`, RULE_TESTS);
    const said = await promtool(["test", "rules", "tests.yml"], dir);
    ok(/SUCCESS/.test(said), said);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
