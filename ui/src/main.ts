// Coffer's UI: a sidebar of screens and one view at a time.
import { clear, h } from "./dom";
import { homeView } from "./views/home";

interface Screen {
  id: string;
  label: string;
  render: () => HTMLElement;
}

const screens: Screen[] = [{ id: "home", label: "Home", render: homeView }];

function show(id: string): void {
  const screen = screens.find((s) => s.id === id) ?? screens[0];
  const view = document.getElementById("view")!;
  clear(view);
  view.append(screen.render());
  for (const a of document.querySelectorAll<HTMLAnchorElement>("#nav a")) {
    if (a.dataset.screen === screen.id) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function buildNav(): void {
  const nav = document.getElementById("nav")!;
  for (const s of screens) {
    nav.append(
      h("li", {},
        h("a", {
          href: `#${s.id}`,
          testid: `nav-${s.id}`,
          "data-screen": s.id,
        }, s.label)),
    );
  }
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
}

buildNav();
show(location.hash.slice(1) || "home");
