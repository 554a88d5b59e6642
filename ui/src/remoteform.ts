// The off-site destination fields (none / S3-compatible / SFTP) and their
// "Test connection" button: in the backup set form (prefix "set-remote") and
// in the Recovery wizard (prefix "recovery-remote"). Secrets are typed here
// and sent once; they are kept in the OS keyring, never in settings.json.
import { call } from "./api";
import type { ConnectionReport, Destination, RemoteCredentialsInput } from "./bindings";
import { h } from "./dom";
import { pathField } from "./pathfield";
import { button, field, guarded, select } from "./ui";

export interface RemoteFields {
  el: HTMLElement;
  /** The destination typed, or null for "none". */
  destination: () => Destination | null;
  /** The credentials typed, or null when none were typed (keep the saved ones). */
  credentials: () => RemoteCredentialsInput | null;
  /** Empties every secret field (after a save). */
  clearSecrets: () => void;
  /** The upload limit typed, in bytes per second (null: none; 0: not a
   * number, which the backend refuses with CF-A094). Only in the set form. */
  uploadLimit: () => number | null;
}

/** "2.5" (MB/s, a comma as decimal mark too) -> 2500000 bytes per second;
 * "" -> null (no limit); anything else -> 0, which is refused (CF-A094)
 * rather than saved as "no limit". */
export function parseUploadLimit(text: string): number | null {
  const t = text.trim().replace(",", ".");
  if (t === "") return null;
  const mbps = /^[0-9]*\.?[0-9]+$/.test(t) ? Number(t) : NaN;
  return Number.isFinite(mbps) && mbps > 0 ? Math.round(mbps * 1e6) : 0;
}

/** `SHA256:…` named by a "host key not confirmed" error (CF-O008). */
export function presentedHostKey(message: string): string | null {
  const m = /SHA256:[A-Za-z0-9+/]{43}/.exec(message);
  return m ? m[0] : null;
}

/**
 * The destination fields. `existing`: the saved destination (its secrets
 * are in the keyring: the secret fields stay empty and mean "keep").
 * `setId`: the saved set, whose kept credentials Test connection may use.
 */
export function remoteFields(prefix: string, existing: Destination | null, setId: string | null, withNone = true, uploadLimit?: number | null): RemoteFields {
  const kinds: [string, string][] = [
    ...(withNone ? [["none", "None (this computer only)"] as [string, string]] : []),
    ["s3", "S3-compatible object storage"],
    ["sftp", "SFTP server"],
  ];
  const kind = select("Off-site copy", `${prefix}-type`, kinds, existing?.type ?? (withNone ? "none" : "s3"));
  const s3 = existing?.type === "s3" ? existing : null;
  const sftp = existing?.type === "sftp" ? existing : null;
  const kept = existing ? "kept in the OS keyring: leave empty to keep it" : "";

  const endpoint = field("Endpoint URL", `${prefix}-endpoint`, { value: s3?.endpoint ?? "", placeholder: "https://s3.eu-central-1.amazonaws.com" });
  const region = field("Region", `${prefix}-region`, { value: s3?.region ?? "us-east-1", help: "The signing region: us-east-1, garage, auto for R2…" });
  const bucket = field("Bucket", `${prefix}-bucket`, { value: s3?.bucket ?? "" });
  const prefixF = field("Folder in the bucket (optional)", `${prefix}-prefix`, { value: s3?.prefix ?? "" });
  const keyId = field("Access key ID", `${prefix}-access-key-id`, { placeholder: kept });
  const secret = field("Secret access key", `${prefix}-secret`, { type: "password", placeholder: kept, autocomplete: "new-password" });
  const s3Box = h("fieldset", { class: "grid-2", testid: `${prefix}-s3` }, h("legend", {}, "S3-compatible storage"),
    endpoint.row, region.row, bucket.row, prefixF.row, keyId.row, secret.row);

  const host = field("Host", `${prefix}-host`, { value: sftp?.host ?? "", placeholder: "backup.example.org" });
  const port = field("Port", `${prefix}-port`, { type: "number", value: String(sftp?.port ?? 22) });
  const user = field("User", `${prefix}-user`, { value: sftp?.user ?? "" });
  const path = field("Folder on the server", `${prefix}-path`, { value: sftp?.path ?? "coffer", help: "Relative to the user's home folder, or a full path starting with /." });
  const hostKey = field("Server's host key (SHA256 fingerprint)", `${prefix}-host-key`, {
    value: sftp?.host_key ?? "",
    placeholder: "SHA256:…",
    help: "Test connection shows the key the server presents; compare it with the one the server's administrator gives you before trusting it.",
  });
  const auth = select("Sign in with", `${prefix}-auth`, [["key", "A private key file"], ["password", "A password"]], "key");
  const keyFile = pathField("Private key file", `${prefix}-key-file`, "open_key_file", { placeholder: "/home/me/.ssh/id_ed25519" });
  const passphrase = field("Key passphrase (if the key has one)", `${prefix}-passphrase`, { type: "password", autocomplete: "new-password" });
  const password = field("Password", `${prefix}-password`, { type: "password", placeholder: kept, autocomplete: "new-password" });
  const sftpBox = h("fieldset", { class: "grid-2", testid: `${prefix}-sftp` }, h("legend", {}, "SFTP server"),
    host.row, port.row, user.row, path.row, hostKey.row, auth.row, keyFile.row, passphrase.row, password.row);

  // The set form only: uploads happen in backups, not in a recovery.
  const limit = uploadLimit === undefined ? null : field("Upload limit in MB/s (optional)", `${prefix}-upload-limit`, {
    value: uploadLimit ? String(uploadLimit / 1e6) : "",
    placeholder: "no limit",
    help: "Leave empty to upload as fast as the connection allows; for example 2.5 keeps uploads to about 2.5 MB/s (20 Mbit/s) on average.",
  });
  limit?.input.setAttribute("inputmode", "decimal");

  const sync = () => {
    if (limit) limit.row.hidden = kind.input.value === "none";
    s3Box.hidden = kind.input.value !== "s3";
    sftpBox.hidden = kind.input.value !== "sftp";
    const byKey = auth.input.value === "key";
    keyFile.row.hidden = !byKey;
    passphrase.row.hidden = !byKey;
    password.row.hidden = byKey;
    test.hidden = kind.input.value === "none";
  };

  const destination = (): Destination | null => {
    switch (kind.input.value) {
      case "s3":
        return { type: "s3", endpoint: endpoint.input.value.trim(), region: region.input.value.trim(), bucket: bucket.input.value.trim(), prefix: prefixF.input.value.trim() };
      case "sftp": {
        const hk = hostKey.input.value.trim();
        return { type: "sftp", host: host.input.value.trim(), port: Math.floor(Number(port.input.value) || 22), user: user.input.value.trim(), path: path.input.value.trim(), host_key: hk ? hk : null };
      }
      default:
        return null;
    }
  };
  const credentials = (): RemoteCredentialsInput | null => {
    switch (kind.input.value) {
      case "s3":
        return keyId.input.value.trim() || secret.input.value
          ? { type: "s3", access_key_id: keyId.input.value.trim(), secret_access_key: secret.input.value }
          : null;
      case "sftp":
        if (auth.input.value === "password") return password.input.value ? { type: "sftp_password", password: password.input.value } : null;
        return keyFile.input.value.trim()
          ? { type: "sftp_key", key_file: keyFile.input.value.trim(), passphrase: passphrase.input.value ? passphrase.input.value : null }
          : null;
      default:
        return null;
    }
  };

  const result = h("div", { testid: `${prefix}-test-result`, "aria-live": "polite" });
  const test = button("Test connection", `${prefix}-test`, () => {
    const d = destination();
    if (!d) return;
    result.dataset.state = "testing";
    void guarded(test, result, async () => {
      try {
        const r: ConnectionReport = await call("test_remote", { destination: d, credentials: credentials(), set_id: setId });
        result.dataset.state = "ok";
        result.replaceChildren(h("p", { class: "ok", testid: `${prefix}-test-ok` },
          `Connected to ${r.destination} in ${r.round_trip_ms} ms: listing, writing, reading and deleting work. `,
          r.repository ? `A Coffer copy is there already (repository ${r.repository.slice(0, 8)}…).` : "No Coffer copy is there yet; the first backup makes one."));
      } catch (e) {
        result.dataset.state = "error";
        throw e;
      }
    }).then(() => {
      // A server key to confirm: offer to fill it in (after comparing it).
      const err = result.querySelector('[data-error-code="CF-O008"] [data-testid="error-message"]');
      const presented = err ? presentedHostKey(err.textContent ?? "") : null;
      if (presented) {
        result.append(h("p", {}, button(`Trust ${presented}`, `${prefix}-trust-host-key`, () => {
          hostKey.input.value = presented;
          result.replaceChildren(h("p", { class: "note" }, "Host key filled in: test again, then save."));
        }, "secondary")));
      }
    });
  }, "secondary");

  kind.input.addEventListener("change", sync);
  auth.input.addEventListener("change", sync);
  sync();
  const el = h("fieldset", { class: "form", testid: `${prefix}` }, h("legend", {}, "Off-site copy"),
    h("p", { class: "muted" }, "Keep an encrypted copy on a server too, so a lost or stolen computer (and its disks) loses no backup. The provider sees only encrypted objects with random names. Secrets are kept in your OS keyring, never in Coffer's settings file."),
    kind.row, s3Box, sftpBox, limit?.row ?? null, h("div", { class: "actions" }, test), result);
  const clearSecrets = () => {
    for (const f of [keyId, secret, passphrase, password]) f.input.value = "";
  };
  const readLimit = () => (limit && kind.input.value !== "none" ? parseUploadLimit(limit.input.value) : null);
  return { el, destination, credentials, clearSecrets, uploadLimit: readLimit };
}
