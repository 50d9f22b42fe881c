// What the single-host views and the fleet view share about ISOs and tasks: a dispatcher
// event turned into a fetch's progress, the progress row with its bar, the ISO row with
// Rename and a confirmed Remove, and a task's row with Kill. Each view passes the calls
// (the daemon's WebSocket, or the router) and shows the answers in the API's words.
import { busy, field, formatBytes, h, message } from "./dom";

export type Task = Record<string, unknown> & { status?: string; iso?: string; percent?: number; message?: string };
export type Fetch = { id: string; iso: string; state: string; percent?: number; rate?: number; done?: number; total?: number | null; upload: boolean };

/**
 * The fetch or upload a ``dispatcher`` event speaks of, or null when it names no task;
 * ``before`` is what the previous event of the same task said.
 */
export function fetchFromEvent(args: Record<string, unknown>, before?: Fetch): Fetch | null {
  const details = (args.process_details ?? {}) as Record<string, unknown>;
  const id = String(details.process_id ?? "");
  if (!id) return null;
  const fetch: Fetch = {
    id,
    iso: String(args.filename ?? ""),
    state: String(args.state ?? ""),
    percent: typeof args.percent === "number" ? args.percent : undefined,
    rate: typeof args.rate === "number" ? args.rate : undefined,
    done: typeof args.bytes_done === "number" ? args.bytes_done : undefined,
    total: typeof args.bytes_total === "number" ? args.bytes_total : null,
    upload: args.stage === "uploading" || args.stage === "storing" || before?.upload === true,
  };
  if (fetch.state === "finished") {
    fetch.state = String(args.result ?? "finished");
    if (fetch.state === "succeeded") fetch.percent = 100;
  }
  return fetch;
}

function fillTo(percent: number): HTMLElement {
  const fill = h("div", { class: "fill" });
  fill.style.width = `${Math.min(100, Math.max(0, percent))}%`;
  return fill;
}

/** One fetch's progress row; ``cancel`` (null: no Cancel button) kills its task. */
export function fetchItem(f: Fetch, cancel: (() => Promise<unknown>) | null): HTMLElement {
  const percent = f.percent ?? 0;
  const left = f.rate && f.total && f.done !== undefined ? Math.max(0, (f.total - f.done) / f.rate) : null;
  const running = f.state === "running" || f.state === "pending";
  const doing = f.upload ? "Uploading" : "Fetching";
  const note = message();
  let button: HTMLButtonElement | null = null;
  if (running && cancel) {
    const made = h("button", { class: "secondary", "aria-label": `Cancel ${doing.toLowerCase()} ${f.iso}` }, "Cancel");
    made.addEventListener("click", () => void busy(made, note, cancel));
    button = made;
  }
  return h(
    "li",
    { "data-iso": f.iso, "data-task": f.id },
    h("span", { class: "iso-name" }, f.iso),
    h(
      "div",
      {
        class: "bar",
        role: "progressbar",
        "aria-label": `${doing} ${f.iso}`,
        "aria-valuemin": 0,
        "aria-valuemax": 100,
        "aria-valuenow": Math.round(percent),
        "aria-valuetext": f.percent === undefined ? `${formatBytes(f.done ?? 0)} so far` : `${Math.round(percent)}%`,
      },
      fillTo(percent),
    ),
    h("span", {}, f.percent === undefined ? formatBytes(f.done ?? 0) : `${Math.round(percent)}%`),
    h("span", {}, f.rate ? `${formatBytes(f.rate)}/s` : ""),
    h("span", {}, left !== null ? `${Math.round(left)} s left` : ""),
    h("span", { class: "state" }, f.state),
    button,
    note,
  );
}

/**
 * Asks before ``work`` runs: ``cell`` shows the question, a ``label`` button that runs it
 * (its refusal shown in ``note``) and Keep, which calls ``back``.
 */
export function confirmInline(cell: HTMLElement, question: string, label: string, note: HTMLElement, work: () => Promise<unknown>, back: () => void): void {
  const yes = h("button", { class: "danger" }, label);
  yes.addEventListener("click", () => void busy(yes, note, work));
  cell.replaceChildren(h("span", {}, question), yes, h("button", { class: "secondary", onclick: back }, "Keep"), note);
  yes.focus();
}

export type IsoCalls = { rename: (source: string, target: string) => Promise<unknown>; remove: (iso: string) => Promise<unknown> };

/**
 * An ISO's row: its name, ``cells`` (its size…), then Rename (a new name) and Remove (asked
 * again); ``calls`` null shows neither.
 */
export function isoRow(iso: string, calls: IsoCalls | null, ...cells: HTMLElement[]): HTMLElement {
  const note = message();
  const cell = h("td", { class: "actions" });
  const idle = () => {
    if (!calls) return cell.replaceChildren(note);
    const rename = h("button", { class: "secondary", onclick: () => renaming(calls) }, "Rename");
    const remove = h("button", { class: "danger", onclick: () => confirmInline(cell, `Remove ${iso}?`, "Remove", note, () => calls.remove(iso), idle) }, "Remove");
    cell.replaceChildren(rename, remove, note);
  };
  const renaming = (given: IsoCalls) => {
    const [row, target] = field(`New name for ${iso}`, { value: iso });
    const save = h("button", { type: "submit" }, "Rename");
    const form = h("form", { class: "inline" }, row, save, h("button", { type: "button", class: "secondary", onclick: idle }, "Keep"), note);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void busy(save, note, () => given.rename(iso, target.value));
    });
    cell.replaceChildren(form);
    target.select();
  };
  idle();
  return h("tr", { "data-iso": iso }, h("th", { scope: "row" }, iso), cells, cell);
}

/** The ISO library's table, whose ``columns`` are the rows' (name first, actions last). */
/** One ISO as the ``isolibrary`` action describes it. */
export type IsoEntry = { size: number; datastore?: string; digest?: string };

/** The size in binary units, with the exact byte count for assistive technology (and as
 * a tooltip). */
export function sizeCell(entry: IsoEntry): HTMLElement {
  const exact = `${entry.size.toLocaleString("en")} bytes`;
  const where = entry.datastore ? ` · ${entry.datastore}` : "";
  return h(
    "td",
    { "data-label": "Size", class: "size" },
    h("span", { title: exact, "aria-hidden": "true" }, formatBytes(entry.size)),
    h("span", { class: "visually-hidden" }, `${exact} (${formatBytes(entry.size)})`),
    where ? h("span", { class: "muted" }, where) : null,
    entry.digest ? h("span", { class: "muted digest", title: entry.digest }, ` · ${entry.digest.slice(0, entry.digest.indexOf(":") + 13)}…`) : null,
  );
}

export function isoTable(caption: string, rows: HTMLElement[], columns: string[] = ["Name", "Actions"]): HTMLElement {
  return h(
    "table",
    { class: "isos" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: columns.length }, "No ISOs yet."))),
  );
}

/** Whether a task can still be killed. */
export function killable(task: Task): boolean {
  return task.status === "queued" || task.status === "running";
}

/** A cell whose column is named on a phone's stacked rows, unless it is empty. */
function labelled(label: string, text: string): HTMLElement {
  return h("td", { "data-label": text ? label : undefined }, text);
}

/** The dispatcher's tasks as a table; ``kill`` (null: no Kill button) kills one by id. */
export function taskTable(caption: string, tasks: [string, Task][], kill: ((id: string) => Promise<unknown>) | null): HTMLElement {
  const rows = tasks.map(([id, task]) => {
    const note = message();
    let button: HTMLButtonElement | null = null;
    if (kill && killable(task)) {
      const made = h("button", { class: "danger", "aria-label": `Kill ${String(task.iso ?? id)}` }, "Kill");
      made.addEventListener("click", () => void busy(made, note, () => kill(id)));
      button = made;
    }
    return h(
      "tr",
      { "data-task": id },
      h("th", { scope: "row" }, String(task.iso ?? id)),
      labelled("Status", String(task.status ?? "")),
      labelled("Done", task.percent !== undefined && task.percent !== null ? `${Math.round(Number(task.percent))}%` : ""),
      labelled("Message", String(task.message ?? "")),
      h("td", { class: "actions" }, button, note),
    );
  });
  return h(
    "table",
    { class: "tasks" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, ["ISO", "Status", "Done", "Message", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 5 }, "No tasks."))),
  );
}
