// Validates Grafana dashboards against Grafana's published dashboard schema: the TypeScript types
// that @grafana/schema generates from Grafana's CUE schema (the `Dashboard` of
// raw/dashboard/x/Dashboard_types.gen), checked by the TypeScript compiler, nothing emitted.
//
// Each dashboard's JSON is written verbatim into a .ts file as an object literal that must
// `satisfies` the type, so the compiler rejects a missing required field, a field of the wrong
// type, a value outside an enumeration and (object literals being checked for excess properties)
// a misspelt or unknown field, at any depth. The schema leaves a panel's `options` and
// `fieldConfig.defaults.custom` to the panel plugin: those are checked against the plugin's own
// generated types (panelcfg) as separate literals; a panel type without one here is an error.
//
//   node check.mjs            every ../dashboards/*.json must pass, every rejected/*.json must fail
//                             with a diagnostic containing the `[expect: TEXT]` of its description
//   node check.mjs FILE...    only these, each must pass
//
// Prints one line per file and "grafana-schema: N passed, M failed" (a rejected fixture that is
// rejected counts as passed). Exit status 1 if any failed.
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const schema = "@grafana/schema/dist/esm/raw";
// The panel types the dashboards use, and the plugin types of their options and custom field config.
const PANELS = {
  timeseries: { module: "composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen", custom: true },
  stat: { module: "composable/stat/panelcfg/x/StatPanelCfg_types.gen", custom: false },
};

// The generated enums are TypeScript enums, to which a JSON string is not assignable even when it
// is a member's value: Literal<T> is T with every string enum replaced by the union of its values.
const LITERAL = `type Literal<T> = 0 extends 1 & T ? T
  : T extends string ? \`\${T}\`
  : T extends number | boolean | null | undefined ? T
  : T extends ReadonlyArray<infer U> ? Array<Literal<U>>
  : T extends object ? { [K in keyof T]: Literal<T[K]> }
  : T;`;

/** The .ts text for one dashboard, and what each generated line range stands for. */
function generate(file) {
  const text = readFileSync(file, "utf8");
  const dashboard = JSON.parse(text); // a syntax error is reported here, as itself
  const imports = [`import type { Dashboard } from "${schema}/dashboard/x/Dashboard_types.gen";`];
  for (const [type, { module, custom }] of Object.entries(PANELS)) {
    const names = [`Options as ${type}Options`].concat(custom ? [`FieldConfig as ${type}Custom`] : []);
    imports.push(`import type { ${names.join(", ")} } from "${schema}/${module}";`);
  }
  const lines = [...imports, ...LITERAL.split("\n"), "export const dashboard = ("];
  const regions = [{ from: lines.length + 1, label: "", offset: lines.length }];
  lines.push(...text.trimEnd().split("\n"), ") satisfies Literal<Dashboard>;");
  const errors = [];
  const panels = (dashboard.panels ?? []).flatMap((p) => [p, ...(p.panels ?? [])]);
  for (const [index, panel] of panels.entries()) {
    if (panel.type === "row") continue;
    const name = `panel "${panel.title}" (${panel.type})`;
    const plugin = PANELS[panel.type];
    if (!plugin) {
      errors.push(`${name}: no panel plugin schema for type ${JSON.stringify(panel.type)} in check.mjs`);
      continue;
    }
    const checks = [["options", panel.options, "Options"]];
    if (plugin.custom) checks.push(["fieldConfig.defaults.custom", panel.fieldConfig?.defaults?.custom ?? {}, "Custom"]);
    for (const [what, value, suffix] of checks) {
      regions.push({ from: lines.length + 1, label: `${name} ${what}: `, offset: lines.length });
      const literal = `export const p${index}_${suffix} = (${JSON.stringify(value, null, 2)}) satisfies Literal<${panel.type}${suffix}>;`;
      lines.push(...literal.split("\n"));
    }
  }
  return { source: lines.join("\n") + "\n", regions, errors };
}

/** Runs tsc over every generated file; returns its diagnostics by generated file name. */
function compile(generated) {
  const dir = join(here, ".gen");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir);
  for (const [name, { source }] of generated) writeFileSync(join(dir, name), source);
  const tsc = join(here, "node_modules/typescript/bin/tsc");
  let output = "";
  try {
    execFileSync(process.execPath, [tsc, "-p", join(here, "tsconfig.json"), "--pretty", "false"], { encoding: "utf8" });
  } catch (error) {
    output = `${error.stdout ?? ""}${error.stderr ?? ""}`;
    if (!/error TS\d+/.test(output)) throw error; // tsc itself failed
  }
  const byFile = new Map();
  // One diagnostic per line starting with the file; continuation lines belong to the previous one.
  let last = null;
  for (const line of output.split("\n")) {
    const match = /^(?:.*[\\/])?\.gen[\\/]([^(]+)\((\d+),\d+\): (error TS\d+: .*)$/.exec(line);
    if (match) {
      last = { line: Number(match[2]), message: match[3] };
      byFile.set(match[1], [...(byFile.get(match[1]) ?? []), last]);
    } else if (last && line.trim()) {
      last.message += ` ${line.trim()}`;
    } else if (line.trim()) {
      byFile.set("(tsc)", [...(byFile.get("(tsc)") ?? []), { line: 0, message: line }]);
    }
  }
  return byFile;
}

/** What a rejected fixture's rejection must mention: `[expect: TEXT]` in its description. */
function expected(file) {
  const match = /\[expect: (.+?)\]/.exec(JSON.parse(readFileSync(file, "utf8")).description ?? "");
  if (!match) throw new Error(`${file}: no [expect: ...] in its description`);
  return match[1];
}

/** A diagnostic as `where: message`, `where` a line of the dashboard file or a panel's part. */
function describe({ line, message }, regions) {
  const region = regions.filter((r) => r.from <= line).at(-1);
  if (!region) return message;
  return region.label ? `${region.label}${message}` : `line ${line - region.offset}: ${message}`;
}

const args = process.argv.slice(2);
const listed = (dir) => readdirSync(join(here, dir)).filter((f) => f.endsWith(".json")).sort().map((f) => join(here, dir, f));
const cases = args.length
  ? args.map((file) => ({ file: resolve(file), reject: false }))
  : [...listed("../dashboards").map((file) => ({ file, reject: false })), ...listed("rejected").map((file) => ({ file, reject: true }))];

const generated = new Map();
const problems = new Map();
for (const [index, { file }] of cases.entries()) {
  const name = `${index}_${basename(file, ".json").replace(/[^A-Za-z0-9_]/g, "_")}.ts`;
  try {
    const { source, regions, errors } = generate(file);
    generated.set(name, { source, regions });
    problems.set(file, errors);
  } catch (error) {
    problems.set(file, [`not JSON: ${error.message}`]);
  }
  cases[index].generatedName = name;
}
const diagnostics = compile(generated);
const stray = diagnostics.get("(tsc)");
if (stray) {
  console.error(`grafana-schema: tsc said:\n${stray.map((d) => d.message).join("\n")}`);
  process.exit(1);
}
let passed = 0;
let failed = 0;
for (const { file, reject, generatedName } of cases) {
  const entry = generated.get(generatedName);
  const found = [...problems.get(file), ...(diagnostics.get(generatedName) ?? []).map((d) => describe(d, entry.regions))];
  const shown = relative(process.cwd(), file);
  if (!reject && found.length === 0) {
    console.log(`  ok        ${shown}`);
    passed++;
  } else if (reject && found.some((p) => p.includes(expected(file)))) {
    console.log(`  rejected  ${shown} (as it should be): ${found.find((p) => p.includes(expected(file))).slice(0, 200)}`);
    passed++;
  } else if (reject) {
    const why = found.length ? `rejected, but not for "${expected(file)}": ${found.join("; ")}` : "accepted";
    console.log(`  FAILED    ${shown}: a broken dashboard was ${why}`);
    failed++;
  } else {
    console.log(`  FAILED    ${shown}:\n${found.map((p) => `    ${p}`).join("\n")}`);
    failed++;
  }
}
console.log(`grafana-schema: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
