// Coffer's UI: a sidebar of screens and one view at a time. On first run
// (no settings yet) the onboarding screen is shown.
import { call } from "./api";
import type { AppOverview } from "./bindings";
import { clear, h } from "./dom";
import { OVERVIEW_CHANGED, startJobEvents } from "./ui";
import { backupsView } from "./views/backups";
import { homeView } from "./views/home";
import { onboardingView } from "./views/onboarding";
import { recoveryView } from "./views/recovery";
import { settingsView } from "./views/settings";
import { snapshotsView } from "./views/snapshots";
import { supportView } from "./views/support";
import { verificationView } from "./views/verification";

interface Screen {
  id: string;
  label: string;
  render: (query: URLSearchParams) => HTMLElement;
}

let overview: AppOverview | null = null;

const screens: Screen[] = [
  { id: "home", label: "Home", render: homeView },
  { id: "backups", label: "Backups", render: backupsView },
  { id: "snapshots", label: "Snapshots", render: snapshotsView },
  { id: "recovery", label: "Recovery", render: recoveryView },
  { id: "verification", label: "Verification", render: verificationView },
  { id: "support", label: "Support", render: (q) => supportView(q.get("code")) },
  { id: "settings", label: "Settings", render: settingsView },
  { id: "onboarding", label: "Set up", render: () => onboardingView(overview, () => { location.hash = "#home"; void refreshOverview(); }) },
];

function show(hash: string): void {
  const [id, qs] = hash.split("?");
  const screen = screens.find((s) => s.id === id) ?? screens[0];
  const view = document.getElementById("view")!;
  clear(view);
  view.append(screen.render(new URLSearchParams(qs ?? "")));
  view.focus();
  for (const a of document.querySelectorAll<HTMLAnchorElement>("#nav a")) {
    if (a.dataset.screen === screen.id) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function buildNav(): void {
  const nav = document.getElementById("nav")!;
  for (const s of screens) {
    nav.append(
      h("li", { testid: `nav-item-${s.id}` },
        h("a", { href: `#${s.id}`, testid: `nav-${s.id}`, "data-screen": s.id }, s.label)),
    );
  }
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  // A screen that changed what the navigation shows (first-run setup ended
  // by "Keep backing up to this file") says so.
  window.addEventListener(OVERVIEW_CHANGED, () => void refreshOverview());
}

async function refreshOverview(): Promise<void> {
  try {
    overview = await call("app_overview", {});
  } catch {
    overview = null;
  }
  const setup = document.querySelector<HTMLElement>('[data-testid="nav-item-onboarding"]');
  if (setup) setup.hidden = !!overview?.onboarded;
  const badge = document.getElementById("demo-badge");
  if (badge && overview) badge.hidden = overview.status.vault.mode !== "embedded_demo";
  document.body.dataset.ready = "true";
}

async function start(): Promise<void> {
  buildNav();
  startJobEvents();
  await refreshOverview();
  const first = overview && !overview.onboarded && !overview.repository;
  const hash = location.hash.slice(1);
  show(hash || (first ? "onboarding" : "home"));
}

void start();
