// A few helpers to build the page from plain DOM nodes (no framework: the page is small).

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | boolean | number | ((event: Event) => void) | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") element.addEventListener(key.replace(/^on/, ""), value);
    else if (value === true) element.setAttribute(key, "");
    else element.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child);
  }
  return element;
}

let unique = 0;
export function uid(prefix: string): string {
  return `${prefix}-${++unique}`;
}

/** A labelled input; returns the wrapper and the input. */
export function field(label: string, attrs: Attrs = {}): [HTMLElement, HTMLInputElement] {
  const id = uid("f");
  const input = h("input", { id, ...attrs });
  return [h("div", { class: "field" }, h("label", { for: id }, label), input), input];
}

/** Runs ``work`` while ``button`` shows that it is busy; shows its error in ``where``. */
export async function busy(
  button: HTMLButtonElement | null,
  where: HTMLElement,
  work: () => Promise<unknown>,
): Promise<boolean> {
  where.textContent = "";
  where.classList.remove("error");
  const label = button?.textContent ?? "";
  if (button) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    button.textContent = label + "…";
  }
  try {
    await work();
    return true;
  } catch (error) {
    where.textContent = error instanceof Error ? error.message : String(error);
    where.classList.add("error");
    return false;
  } finally {
    if (button) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      button.textContent = label;
    }
  }
}

export function message(): HTMLElement {
  return h("span", { class: "message", role: "status", "aria-live": "polite" });
}

export function formatBytes(value: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let n = value;
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit += 1;
  }
  return `${n.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** A table of an object of objects (pools, devices): one row per key. */
export function objectTable(caption: string, data: Record<string, unknown>): HTMLElement {
  const rows = Object.entries(data);
  const columns = new Set<string>();
  for (const [, value] of rows) {
    if (value && typeof value === "object") for (const key of Object.keys(value)) columns.add(key);
  }
  const cols = [...columns];
  const table = h(
    "table",
    {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "name"), cols.map((c) => h("th", { scope: "col" }, c)))),
    h(
      "tbody",
      {},
      rows.map(([name, value]) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, name),
          value && typeof value === "object"
            ? cols.map((c) => h("td", {}, String((value as Record<string, unknown>)[c] ?? "")))
            : h("td", {}, String(value)),
        ),
      ),
    ),
  );
  return h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": caption }, table);
}
