import { call } from "../api";
import type { AppStatus, ErrorReport } from "../bindings";
import { h } from "../dom";
import { errorPanel } from "./error";

/** The home screen: what this installation is and where it keeps its data. */
export function homeView(): HTMLElement {
  const status = h("div", { class: "card", testid: "home-status", "aria-busy": "true" },
    h("p", { class: "muted", testid: "home-status-loading" }, "Checking this installation…"));
  const view = h("section", { class: "view", testid: "home-screen", "aria-labelledby": "home-title" },
    h("header", { class: "view-head" },
      h("h1", { id: "home-title" }, "Welcome to Coffer"),
      h("p", { class: "lede" },
        "Encrypted, deduplicated backups in one portable file. Only you can open them: with your recovery code through the vault, or with your 64-digit recovery key."),
    ),
    status,
  );
  void load(status);
  return view;
}

async function load(card: HTMLElement): Promise<void> {
  try {
    const st = await call("app_status", {});
    renderStatus(card, st);
  } catch (e) {
    card.replaceChildren(errorPanel(e as ErrorReport));
  } finally {
    card.setAttribute("aria-busy", "false");
  }
}

function renderStatus(card: HTMLElement, st: AppStatus): void {
  const badge = document.getElementById("demo-badge");
  if (badge) badge.hidden = !st.vault.simulated_hsm;
  const children: Node[] = [
    h("h2", {}, "This installation"),
    h("dl", { class: "facts" },
      h("dt", {}, "Vault"), h("dd", { testid: "home-vault-label" }, st.vault.label),
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
