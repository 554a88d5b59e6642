#!/usr/bin/python3
"""Reads and uses a native GTK file dialog of the app through AT-SPI, the
accessibility interface screen readers use (Debian: python3-pyatspi).

WebDriver cannot reach GTK's file chooser, and keys typed with xdotool reach
it before GTK has finished with the ones before (its location field completes
folders asynchronously). This helper lets the test wait for the state the next
step needs instead of guessing a delay (tests/webdriver/dialog.rs).

    a11y.py focused TITLE        the role and name of the dialog's focused widget
    a11y.py text TITLE           the text of the dialog's focused text field
    a11y.py accept TITLE         the dialog's default button, once it is enabled
                                 (Return does nothing while it is not)
    a11y.py tree TITLE           the dialog's widget tree, for failure reports

TITLE is the dialog window's exact title. Exits 3 when no such dialog (or
focused widget) is shown yet, 0 on success, 1 on any other error.
"""

import sys

import pyatspi


class NotYet(Exception):
    pass


def dialog(title):
    desktop = pyatspi.Registry.getDesktop(0)
    for i in range(desktop.childCount):
        app = desktop.getChildAtIndex(i)
        if app is None:
            continue
        for j in range(app.childCount):
            w = app.getChildAtIndex(j)
            if w is not None and w.name == title:
                return w
    raise NotYet(f"no dialog titled {title!r}")


def showing(acc):
    return acc.getState().contains(pyatspi.STATE_SHOWING)


def find(acc, want):
    """The first showing descendant for which want(acc) holds (depth first)."""
    stack = [acc]
    while stack:
        a = stack.pop()
        if a is None:
            continue
        try:
            if want(a):
                return a
            if showing(a) or a is acc:
                stack.extend(a.getChildAtIndex(i) for i in reversed(range(a.childCount)))
        except Exception:
            continue
    return None


def focused(title):
    d = dialog(title)
    w = find(d, lambda a: showing(a) and a.getState().contains(pyatspi.STATE_FOCUSED))
    if w is None:
        raise NotYet("nothing in the dialog has the keyboard focus yet")
    return f"{w.getRoleName()} {w.name!r}"


def focused_text(title):
    d = dialog(title)
    field = find(
        d,
        lambda a: a.getRoleName() == "text"
        and showing(a)
        and a.getState().contains(pyatspi.STATE_FOCUSED),
    )
    if field is None:
        raise NotYet("no focused text field in the dialog")
    t = field.queryText()
    return t.getText(0, -1)


def accept(title):
    d = dialog(title)
    button = find(
        d,
        lambda a: a.getRoleName() == "push button"
        and showing(a)
        and a.getState().contains(pyatspi.STATE_IS_DEFAULT),
    )
    if button is None:
        raise NotYet("the dialog has no default button yet")
    if not button.getState().contains(pyatspi.STATE_SENSITIVE):
        raise NotYet(f"its default button {button.name!r} is disabled")
    return button.name


def tree(title):
    out = []

    def walk(a, depth):
        if a is None or (depth > 0 and not showing(a)):
            return
        line = f"{'  ' * depth}{a.getRoleName()} {a.name!r}"
        try:
            line += f" text={a.queryText().getText(0, -1)!r}"
        except NotImplementedError:
            pass
        except Exception:
            pass
        if a.getState().contains(pyatspi.STATE_FOCUSED):
            line += " (focused)"
        out.append(line)
        for i in range(min(a.childCount, 80)):
            walk(a.getChildAtIndex(i), depth + 1)

    walk(dialog(title), 0)
    return "\n".join(out)


def main(argv):
    try:
        if len(argv) == 3 and argv[1] == "focused":
            print(focused(argv[2]))
        elif len(argv) == 3 and argv[1] == "text":
            print(focused_text(argv[2]))
        elif len(argv) == 3 and argv[1] == "accept":
            print(accept(argv[2]))
        elif len(argv) == 3 and argv[1] == "tree":
            print(tree(argv[2]))
        else:
            print(__doc__, file=sys.stderr)
            return 1
    except NotYet as e:
        print(e, file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
