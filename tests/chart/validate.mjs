// Validates every manifest `helm template` rendered against Kubernetes' API
// schemas (the npm package kubernetes-models and its CRD companions), and
// checks what the chart promises about its Deployment.
//   node validate.mjs RENDERED.yaml EXPECTED_KINDS [TOML_OUT]
// EXPECTED_KINDS is comma-separated (may be empty); TOML_OUT, when given,
// receives the ConfigMap's lockboxd.toml.
// The packages are ES modules installed under tools/node_modules; they are
// loaded by path, as this file lives outside that tree.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

const modules = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../tools/node_modules");
const YAML = createRequire(path.join(modules, "noop.js"))("yaml");

const crdPackages = {
  "cert-manager.io": "@kubernetes-models/cert-manager",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
  "external-secrets.io": "@kubernetes-models/external-secrets",
};

async function modelFor(apiVersion, kind) {
  const group = apiVersion.includes("/") ? apiVersion.split("/")[0] : "";
  const pkg = crdPackages[group] || "kubernetes-models";
  const file = path.join(modules, pkg, apiVersion, "index.js");
  let mod;
  try {
    mod = await import(pathToFileURL(file).href);
  } catch (e) {
    throw new Error(`no schema for ${apiVersion} (${file}): ${e.message}`);
  }
  if (!mod[kind]) throw new Error(`no schema for ${kind} in ${apiVersion}`);
  return mod[kind];
}

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exitCode = 1;
}

const [file, expected = "", tomlOut] = process.argv.slice(2);
const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"))
  .map((d) => d.toJSON())
  .filter((d) => d);
const kinds = new Set();
for (const doc of docs) {
  const where = `${doc.kind}/${doc.metadata && doc.metadata.name}`;
  try {
    const Model = await modelFor(doc.apiVersion, doc.kind);
    new Model(doc).validate();
    kinds.add(doc.kind);
  } catch (e) {
    fail(`${where}: ${e.message}`);
  }
}
for (const kind of ["Deployment", "Service", "ConfigMap", "ServiceAccount", "PodDisruptionBudget",
                    ...expected.split(",").filter((k) => k)]) {
  if (!kinds.has(kind)) fail(`no ${kind} rendered`);
}

// What the chart promises about the pods.
const deployment = docs.find((d) => d.kind === "Deployment");
const config = docs.find((d) => d.kind === "ConfigMap");
if (deployment) {
  const pod = deployment.spec.template.spec;
  const c = pod.containers[0];
  const sc = c.securityContext || {};
  const check = (ok, what) => { if (!ok) fail(`Deployment: ${what}`); };
  check(pod.securityContext.runAsNonRoot === true, "pod runAsNonRoot");
  check(pod.securityContext.seccompProfile.type === "RuntimeDefault", "RuntimeDefault seccomp");
  check(sc.runAsNonRoot === true, "container runAsNonRoot");
  check(sc.readOnlyRootFilesystem === true, "read-only root filesystem");
  check(sc.allowPrivilegeEscalation === false, "no privilege escalation");
  check(JSON.stringify(sc.capabilities.drop) === '["ALL"]', "all capabilities dropped");
  check(pod.automountServiceAccountToken === false, "no service account token");
  const health = c.ports.find((p) => p.name === "health").containerPort;
  for (const probe of ["readinessProbe", "livenessProbe", "startupProbe"]) {
    check(c[probe] && c[probe].grpc && c[probe].grpc.port === health,
          `${probe} is a gRPC probe on the health port`);
  }
  check(c.livenessProbe.grpc.service === "liveness", "liveness asks the liveness service");
  check(!(c.volumeMounts || []).some((m) => m.subPath), "no subPath mounts (they never see rotation)");
  const drain = /drain-seconds = (\d+)/.exec(config.data["lockboxd.toml"]);
  check(drain && pod.terminationGracePeriodSeconds > Number(drain[1]),
        "terminationGracePeriodSeconds longer than the drain");
  check(!/password|BEGIN/.test(config.data["lockboxd.toml"]), "no secret in the ConfigMap");
  check(c.env.some((e) => e.name === "LOCKBOX_DATABASE_URL" && e.valueFrom && e.valueFrom.secretKeyRef),
        "database URL from a Secret");
  // SPEC section 8: migrations as the owner, in their own container with
  // their own Secret; lockboxd never sees the owner's URL; the signing key
  // is a mounted Secret file.
  const migrate = (pod.initContainers || []).find((i) => i.name === "migrate");
  check(migrate && JSON.stringify(migrate.args) === '["migrate"]', "a `lockboxd migrate` init container");
  const ownerUrl = migrate && migrate.env.find((e) => e.name === "LOCKBOX_MIGRATION_DATABASE_URL");
  check(ownerUrl && ownerUrl.valueFrom && ownerUrl.valueFrom.secretKeyRef, "owner URL from a Secret");
  check(ownerUrl && !c.env.some((e) => e.valueFrom && e.valueFrom.secretKeyRef &&
                                      e.valueFrom.secretKeyRef.name === ownerUrl.valueFrom.secretKeyRef.name),
        "lockboxd itself does not get the owner's Secret");
  check(migrate && migrate.env.some((e) => e.name === "LOCKBOX_RUNTIME_ROLE" && e.value),
        "the runtime role named");
  check(migrate && migrate.securityContext && migrate.securityContext.readOnlyRootFilesystem === true,
        "the init container is locked down like lockboxd");
  // Or (issue 16) a key pair in the PKCS#11 module, which no file holds.
  const toml = config.data["lockboxd.toml"];
  if (/audit-signing-key-uri = "pkcs11:/.test(toml)) {
    check(!/audit-signing-key = /.test(toml), "no signing key file beside the module's key");
  } else {
    check(/audit-signing-key = "\/etc\/lockbox\/audit\//.test(toml),
          "the signing key is a mounted file");
    check((pod.volumes || []).some((v) => v.name === "audit-signing-key" && v.secret),
          "the signing key from a Secret");
  }
  // Token PINs: lockboxd reads them from the init container's private copy
  // in memory, never from the Secret's volume, which it does not mount.
  if (/pkcs11-pin-dir = /.test(toml)) {
    const pins = (pod.initContainers || []).find((i) => i.name === "pkcs11-pins");
    check(pins && pins.args[0] === "install-pins", "a `lockboxd install-pins` init container");
    check((pod.volumes || []).some((v) => v.name === "pkcs11-pins" && v.emptyDir &&
                                         v.emptyDir.medium === "Memory"),
          "the PIN directory in memory");
    check(!(c.volumeMounts || []).some((m) => m.name === "pkcs11-pin-secret"),
          "lockboxd does not mount the PIN Secret");
  }
}
if (tomlOut && config) fs.writeFileSync(tomlOut, config.data["lockboxd.toml"]);
if (process.exitCode) process.exit(1);
console.log(`${file}: ${docs.length} manifests valid (${[...kinds].sort().join(", ")})`);
