import { call } from "../api";
import type { AppOverview, SetView } from "../bindings";
import { h } from "../dom";
import { showError } from "../ui";

/** The home screen: this installation, the backup sets and their freshness. */
export function homeView(): HTMLElement {
  const status = h("div", { class: "card", testid: "home-status", "aria-busy": "true" },
    h("p", { class: "muted", testid: "home-status-loading" }, "Checking this installation…"));
  const banner = h("div", { testid: "home-banner" });
  const sets = h("div", { class: "card", testid: "home-sets" }, h("h2", {}, "Backups"));
  const view = h("section", { class: "view", testid: "home-screen", "aria-labelledby": "home-title" },
    h("header", { class: "view-head" },
      h("h1", { id: "home-title" }, "Welcome to Coffer"),
      h("p", { class: "lede" },
        "Encrypted, deduplicated backups in one portable file. Only you can open them: with your recovery code through the vault, or with your 64-digit recovery key."),
    ),
    banner,
    status,
    sets,
  );
  void load(status, banner, sets);
  return view;
}

async function load(card: HTMLElement, banner: HTMLElement, sets: HTMLElement): Promise<void> {
  try {
    const ov = await call("app_overview", {});
    renderStatus(card, ov);
    renderBanner(banner, ov);
    renderSets(sets, await call("list_sets", {}));
  } catch (e) {
    showError(card, e);
  } finally {
    card.setAttribute("aria-busy", "false");
  }
}

function renderBanner(banner: HTMLElement, ov: AppOverview): void {
  if (ov.onboarded && ov.repository && !ov.unlocked) {
    banner.append(h("div", { class: "note", testid: "home-unlock-needed" },
      "The backup key is not on this device right now, so backups cannot run. ",
      h("a", { href: "#recovery" }, ov.key_mode === "recovery_code" ? "Enter your recovery code" : "Enter your recovery key"), "."));
  }
  if (ov.failed_sets > 0) {
    banner.append(h("div", { class: "warning", role: "alert", testid: "home-failed-warning" },
      `The last backup of ${ov.failed_sets} backup set${ov.failed_sets > 1 ? "s" : ""} failed. `,
      h("a", { href: "#backups" }, "Open Backups to see why"), "."));
  }
  if (ov.stale_sets > 0) {
    banner.append(h("div", { class: "warning", role: "alert", testid: "home-stale-warning" },
      `${ov.stale_sets} backup set${ov.stale_sets > 1 ? "s are" : " is"} older than the schedule allows. `,
      h("a", { href: "#backups" }, "Open Backups"), "."));
  }
  if (ov.settings_error) {
    banner.append(h("div", { class: "warning", testid: "home-settings-error" }, ov.settings_error.message, " ", ov.settings_error.next_step));
  }
}

function renderSets(el: HTMLElement, sets: SetView[]): void {
  if (sets.length === 0) {
    el.append(h("p", { class: "muted", testid: "home-no-sets" }, "No backup set yet. ", h("a", { href: "#backups" }, "Create one"), "."));
    return;
  }
  el.append(h("ul", { class: "set-summary" }, ...sets.map((s) =>
    h("li", { testid: `home-set-${s.set.id}`, class: s.stale || s.failure ? "stale" : undefined },
      h("strong", {}, s.set.name), " — ", h("span", { testid: `home-set-sentence-${s.set.id}` }, s.sentence),
      s.failure ? h("span", { testid: `home-set-failure-${s.set.id}` }, ` Last backup failed: ${s.failure.message} ${s.failure.next_step}`) : null))));
}

function renderStatus(card: HTMLElement, ov: AppOverview): void {
  const st = ov.status;
  const badge = document.getElementById("demo-badge");
  if (badge) badge.hidden = st.vault.mode !== "embedded_demo";
  const children: Node[] = [
    h("h2", {}, "This installation"),
    h("dl", { class: "facts" },
      h("dt", {}, "Vault"), h("dd", { testid: "home-vault-label" }, st.vault.label),
      h("dt", {}, "Backup file"), h("dd", { testid: "home-repository", class: "mono" }, ov.repository ?? "none yet"),
      h("dt", {}, "Key on this device"), h("dd", { testid: "home-keyring" },
                ov.keyring.available ? "OS keyring available"
          : ov.keyring.error ? `OS keyring unavailable (${ov.keyring.error.code}): the key is asked for` : "checking the OS keyring…"),
      h("dt", {}, "Data folder"), h("dd", { testid: "home-data-dir", class: "mono" }, st.data_dir),
      h("dt", {}, "Version"), h("dd", { testid: "home-version" }, st.version),
    ),
  ];
  if (st.vault.simulated_hsm) {
    children.push(h("p", { class: "note", testid: "home-simulation-note" },
      "The HSMs in this build are a software simulation running on this computer. They show how the vault works; they are not hardware."));
  }
  card.replaceChildren(...children);
}
