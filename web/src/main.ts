// The sysadmd dashboard: log in, then guests, ISOs, tasks, host and consoles, all over
// the daemon's WebSocket API and kept live by its events.
import "@xterm/xterm/css/xterm.css";
import "./style.css";
import { Api, ApiError, siteUrl } from "./api";
import { busy, field, formatBytes, h, message, objectTable, uid } from "./dom";
import { consoleFromHash, fleetConfigured, leaveFleet, loadFleetConfig, showFleet } from "./fleetnav";
import { type Fetch, type IsoEntry, type Task, fetchFromEvent, fetchItem, isoRow, isoTable as libraryTable, sizeCell, taskTable } from "./tasks-shared";
import { uploadForm } from "./upload";

type Guest = { description: string; rcboot: string; running: string; vmm: string };

const TOKEN_KEY = "sysadmd.token";
const api = new Api();
const app = document.getElementById("app") as HTMLElement;

let token: string | null = sessionStorage.getItem(TOKEN_KEY);
let canWrite = false;
let guests: Record<string, Guest> = {};
const fetches = new Map<string, Fetch>();
let view: "guests" | "isos" | "tasks" | "host" | "fleet" = "guests";
let detailsOf: string | null = null;
let consoleOf: string | null = null;
let closeConsole: (() => void) | null = null;
/** The ISO this page is uploading: its own form shows the progress, not the task list. */
let uploadingHere: string | null = null;
/** rpc/identify's host name, once known. */
let hostName = "";

function stateOf(guest: Guest): string {
  if (guest.running === "YES") return "running";
  if (guest.vmm === "YES") return "bootloader";
  return "stopped";
}

// ---- login -----------------------------------------------------------------------

function showLogin(problem = ""): void {
  closeConsole?.();
  const [userRow, user] = field("User name", { name: "username", autocomplete: "username", required: true });
  const [passRow, pass] = field("Password", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "message error", role: "alert" }, problem);
  const button = h("button", { type: "submit" }, "Log in");
  const form = h("form", { class: "login", "aria-labelledby": "login-title" }, h("h1", { id: "login-title" }, "sysadmd"), userRow, passRow, button, error);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void busy(button, error, async () => {
      const reply = await api.call<[string, number]>("rpc", "auth", { username: user.value, password: pass.value });
      token = reply[0];
      sessionStorage.setItem(TOKEN_KEY, token);
      await started();
    });
  });
  app.replaceChildren(h("main", { class: "centered" }, form));
  user.focus();
}

async function resume(): Promise<void> {
  if (!token) return showLogin();
  try {
    await api.call("rpc", "auth_token", { token });
    await started();
  } catch {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    showLogin();
  }
}

async function logOut(): Promise<void> {
  try {
    await api.call("rpc", "auth_clear", {});
  } finally {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    canWrite = false;
    leaveFleet();
    api.close();
    showLogin();
  }
}

async function started(): Promise<void> {
  const rights = await api.call<Record<string, string>>("rpc", "query", {});
  canWrite = rights["sysadm/iohyve"] === "read/write";
  // The title follows the host's name; the guest list need not wait for it.
  identify().catch(() => undefined);
  guests = await api.iohyve<Record<string, Guest>>("listvms");
  await api.call("events", "subscribe", ["guests", "dispatcher"]);
  await loadFleetConfig();
  render();
  const linked = consoleFromHash(); // a console link from another host's fleet view
  if (linked) openConsole(linked);
}

api.onEvent = (name, args) => {
  if (name === "guests" && args.guests && typeof args.guests === "object") {
    const list = args.guests as { listvms?: Record<string, Guest> } & Record<string, Guest>;
    guests = (list.listvms ?? list) as Record<string, Guest>;
    if (view === "guests") renderGuests();
  } else if (name === "dispatcher") {
    dispatcherEvent(args);
  }
};
api.onClose = (reason) => {
  if (token) showLogin(`Disconnected: ${reason}. Log in again.`);
};

// ---- the frame -------------------------------------------------------------------

const content = h("main", { id: "content" });
const live = h("div", { id: "fetches", "aria-live": "polite" });

function render(): void {
  const tab = (name: typeof view, label: string) =>
    h("button", { class: "tab", "aria-current": view === name ? "page" : undefined, onclick: () => { view = name; detailsOf = null; render(); } }, label);
  const header = h(
    "header",
    {},
    h("span", { class: "brand" }, "sysadmd"),
    h("nav", { "aria-label": "Sections" }, tab("guests", "Guests"), tab("isos", "ISOs"), tab("tasks", "Tasks"), tab("host", "Host"), fleetConfigured() ? tab("fleet", "Fleet") : null),
    h("span", { class: "role" }, canWrite ? "admin" : "operator (read only)"),
    h("button", { class: "secondary", onclick: () => void logOut() }, "Log out"),
  );
  app.replaceChildren(header, content);
  if (view === "guests") renderGuests();
  else if (view === "isos") void renderIsos();
  else if (view === "tasks") void renderTasks();
  else if (view === "fleet") void showFleet(content);
  else void renderHost();
}

// ---- guests ----------------------------------------------------------------------

function renderGuests(): void {
  if (consoleOf) return;
  const note = message();
  const names = Object.keys(guests).sort();
  const rows = names.map((name) => guestRow(name, guests[name] as Guest));
  const table = h(
    "table",
    { class: "guests" },
    h("caption", {}, "Guests"),
    h("thead", {}, h("tr", {}, ["Name", "State", "Boot at start", "Description", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 5 }, "No guests yet."))),
  );
  const create = canWrite ? h("button", { onclick: () => createForm(toolbar) }, "Create guest") : null;
  const toolbar = h("div", { class: "toolbar" }, h("h1", {}, "Guests"), create, note);
  const keep = content.querySelector(".details");
  content.replaceChildren(toolbar, h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": "Guest table" }, table));
  if (detailsOf && guests[detailsOf]) content.append(keep && keep.getAttribute("data-guest") === detailsOf ? keep : details(detailsOf));
}

function guestRow(name: string, guest: Guest): HTMLElement {
  const note = message();
  const state = stateOf(guest);
  const act = (label: string, work: () => Promise<unknown>, cls = "") => {
    const button = h("button", { class: cls }, label);
    button.addEventListener("click", () => void busy(button, note, work));
    return button;
  };
  const controls: (HTMLElement | null)[] = [];
  if (canWrite) {
    if (state === "stopped") controls.push(act("Start", () => api.iohyve("start", { name })));
    else {
      controls.push(act("Stop", () => api.iohyve("stop", { name })));
      controls.push(act("Force stop", () => api.iohyve("stop", { name, force: "true" }), "danger"));
    }
  }
  controls.push(h("button", { class: "secondary", onclick: () => openConsole(name) }, "Console"));
  controls.push(h("button", { class: "secondary", "aria-expanded": detailsOf === name ? "true" : "false", onclick: () => { detailsOf = detailsOf === name ? null : name; renderGuests(); } }, "Details"));
  return h(
    "tr",
    { "data-guest": name },
    h("th", { scope: "row" }, name),
    h("td", { "data-label": "State" }, h("span", { class: `state ${state}` }, state)),
    h("td", { "data-label": "Boot at start" }, guest.rcboot === "YES" ? "yes" : "no"),
    h("td", { "data-label": "Description" }, guest.description),
    h("td", { class: "actions" }, controls, note),
  );
}

function createForm(where: HTMLElement): void {
  if (where.querySelector("form")) return;
  const [nameRow, name] = field("Name", { required: true });
  const [sizeRow, size] = field("Disk size", { value: "10G", required: true });
  const note = message();
  const submit = h("button", { type: "submit" }, "Create");
  const form = h("form", { class: "inline", "aria-label": "Create guest" }, nameRow, sizeRow, submit, h("button", { type: "button", class: "secondary", onclick: () => form.remove() }, "Close"), note);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void busy(submit, note, async () => {
      await api.iohyve("create", { name: name.value, size: size.value });
      guests = await api.iohyve<Record<string, Guest>>("listvms");
      renderGuests();
    });
  });
  where.append(form);
  name.focus();
}

function details(name: string): HTMLElement {
  const box = h("section", { class: "details", "data-guest": name, "aria-label": `Details of ${name}` }, h("h2", {}, `Guest ${name}`), h("p", {}, "Loading…"));
  void (async () => {
    const note = message();
    try {
      const [props, disks, isos] = await Promise.all([
        api.iohyve<Record<string, Record<string, string>>>("getprops", { name }),
        api.iohyve<Record<string, string>>("listdisks", { name }),
        api.iohyve<string[]>("listisos"),
      ]);
      box.replaceChildren(h("h2", {}, `Guest ${name}`), properties(name, props[name] ?? {}), diskTable(name, disks), canWrite ? install(name, isos) : "", canWrite ? deleteGuest(name) : "", note);
    } catch (error) {
      note.textContent = error instanceof Error ? error.message : String(error);
      note.classList.add("error");
      box.replaceChildren(h("h2", {}, `Guest ${name}`), note);
    }
  })();
  return box;
}

function properties(name: string, props: Record<string, string>): HTMLElement {
  const rows = Object.entries(props)
    .sort()
    .map(([key, value]) => {
      const id = uid("p");
      const note = message();
      const input = h("input", { id, value, readonly: !canWrite });
      const save = h("button", { class: "secondary" }, "Save");
      save.addEventListener("click", () => void busy(save, note, async () => {
        await api.iohyve("setprop", { name, [key]: input.value });
        note.textContent = "saved";
      }));
      return h("tr", {}, h("th", { scope: "row" }, h("label", { for: id }, key)), h("td", {}, input), h("td", {}, canWrite ? save : null, note));
    });
  return h("table", { class: "props" }, h("caption", {}, "Properties"), h("tbody", {}, rows));
}

function diskTable(name: string, disks: Record<string, string>): HTMLElement {
  const reload = () => { const box = content.querySelector(".details"); box?.replaceWith(details(name)); };
  const rows = Object.entries(disks).sort().map(([disk, size]) => {
    const note = message();
    const [resizeRow, newSize] = field(`New size of ${disk}`, { value: size, size: 6 });
    const resize = h("button", { class: "secondary" }, "Resize");
    resize.addEventListener("click", () => void busy(resize, note, async () => { await api.iohyve("resizedisk", { name, disk, size: newSize.value }); reload(); }));
    const remove = h("button", { class: "danger" }, "Delete");
    remove.addEventListener("click", () => void busy(remove, note, async () => { await api.iohyve("deletedisk", { name, disk }); reload(); }));
    return h("tr", {}, h("th", { scope: "row" }, disk), h("td", {}, size), h("td", { class: "actions" }, canWrite ? [resizeRow, resize, disk === "disk0" ? null : remove] : null, note));
  });
  const note = message();
  const [addRow, addSize] = field("Size of the new disk", { value: "10G", size: 6 });
  const add = h("button", {}, "Add disk");
  add.addEventListener("click", () => void busy(add, note, async () => { await api.iohyve("adddisk", { name, size: addSize.value }); reload(); }));
  return h("div", {}, h("table", {}, h("caption", {}, "Disks"), h("tbody", {}, rows)), canWrite ? h("div", { class: "inline" }, addRow, add, note) : null);
}

function install(name: string, isos: string[]): HTMLElement {
  const id = uid("iso");
  const select = h("select", { id }, isos.map((iso) => h("option", { value: iso }, iso)));
  const note = message();
  const go = h("button", {}, "Install");
  go.addEventListener("click", () => void busy(go, note, async () => { await api.iohyve("install", { name, iso: select.value }); note.textContent = "installing: open the console"; }));
  return h("div", { class: "inline" }, h("label", { for: id }, "Install from ISO"), select, go, note);
}

function deleteGuest(name: string): HTMLElement {
  const [row, typed] = field(`Type ${name} to delete this guest`, { autocomplete: "off" });
  const note = message();
  const go = h("button", { class: "danger", disabled: true }, "Delete");
  typed.addEventListener("input", () => { go.disabled = typed.value !== name; });
  go.addEventListener("click", () => void busy(go, note, async () => {
    await api.iohyve("delete", { name });
    delete guests[name];
    detailsOf = null;
    renderGuests();
  }).then(() => { go.disabled = typed.value !== name; }));
  return h("div", { class: "inline danger-zone" }, row, go, note);
}

// ---- ISOs and fetches ----------------------------------------------------------------

function dispatcherEvent(args: Record<string, unknown>): void {
  const id = String(((args.process_details ?? {}) as Record<string, unknown>).process_id ?? "");
  const fetch = fetchFromEvent(args, fetches.get(id));
  if (!fetch) return;
  const known = fetches.has(id);
  fetches.set(id, fetch);
  // The task list follows each task's changes of state (not every progress event).
  if (view === "tasks" && (!known || args.state !== "running")) void renderTasks();
  if (view === "isos") {
    renderFetches();
    if (args.state === "finished") void listIsos();
  }
}

function renderFetches(): void {
  const kill = (id: string) => () => api.call("rpc", "dispatcher", { action: "kill", job_id: id });
  const items = [...fetches.values()].filter((f) => !(f.upload && f.iso === uploadingHere)).map((f) => fetchItem(f, canWrite ? kill(f.id) : null));
  live.replaceChildren(items.length ? h("h2", {}, "Fetches and uploads") : "", h("ul", { class: "fetches" }, items));
}

const isoTable = h("div", {});

async function listIsos(): Promise<void> {
  const library = await api.iohyve<Record<string, IsoEntry>>("isolibrary");
  const calls = {
    rename: async (source: string, target: string) => { await api.iohyve("renameiso", { source, target }); await listIsos(); },
    remove: async (target: string) => { await api.iohyve("rmiso", { target }); await listIsos(); },
  };
  const rows = Object.keys(library).sort().map((iso) => isoRow(iso, canWrite ? calls : null, sizeCell(library[iso] as IsoEntry)));
  isoTable.replaceChildren(libraryTable("ISO library", rows, ["Name", "Size", "Actions"]));
}

async function renderIsos(): Promise<void> {
  const note = message();
  const [urlRow, url] = field("URL", { type: "url", placeholder: "https://…/image.iso", required: true });
  const go = h("button", { type: "submit" }, "Fetch");
  const form = h("form", { class: "inline", "aria-label": "Fetch an ISO" }, urlRow, go, note);
  form.addEventListener("submit", (event) => { event.preventDefault(); void busy(go, note, async () => { await api.iohyve("fetchiso", { url: url.value }); url.value = ""; }); });
  const upload = canWrite
    ? uploadForm(() => token ?? "", () => listIsos(), (name) => { uploadingHere = name; renderFetches(); })
    : "";
  content.replaceChildren(h("h1", {}, "ISOs"), canWrite ? form : "", upload, live, isoTable);
  renderFetches();
  await busy(null, note, listIsos);
}

// ---- tasks -----------------------------------------------------------------------------

async function renderTasks(): Promise<void> {
  const note = message();
  content.replaceChildren(h("h1", {}, "Tasks"), note);
  await busy(null, note, async () => {
    const reply = await api.call<{ jobs?: { no_queue?: Record<string, Task> } }>("rpc", "dispatcher", { action: "list" });
    const tasks = Object.entries(reply.jobs?.no_queue ?? {});
    const kill = async (id: string) => { await api.call("rpc", "dispatcher", { action: "kill", job_id: id }); await renderTasks(); };
    content.append(taskTable("Fetches and uploads", tasks, canWrite ? kill : null));
  });
}

// ---- host ------------------------------------------------------------------------------

/** The host's name as the daemon gives it (rpc/identify), also shown in the page title. */
async function identify(): Promise<string> {
  const reply = await api.call<{ hostname?: unknown }>("rpc", "identify", {});
  hostName = typeof reply.hostname === "string" ? reply.hostname : "";
  document.title = hostName ? `${hostName} · sysadmd` : "sysadmd";
  return hostName;
}

function backendLine(reply: unknown): string {
  if (typeof reply === "string") return reply;
  const v = (reply ?? {}) as { backend?: unknown; version?: unknown };
  const backend = String(v.backend ?? "?");
  const version = String(v.version ?? "?");
  // iohyve's own version line starts with its name: say it once.
  return version.startsWith(`${backend} `) ? version : `${backend}: ${version}`;
}

async function renderHost(): Promise<void> {
  const note = message();
  content.replaceChildren(h("h1", {}, "Host"), note);
  note.textContent = "Loading…";
  const settle = async <T,>(work: Promise<T>): Promise<T | ApiError> => work.catch((e: unknown) => (e instanceof ApiError ? e : new ApiError("?", String(e))));
  const [version, pools, devices, identity] = await Promise.all([
    settle(api.iohyve<unknown>("version")),
    settle(api.call<{ list_pools?: Record<string, unknown> }>("sysadm", "zfs", { action: "list_pools" })),
    settle(api.call<Record<string, unknown>>("sysadm", "network", { action: "list-devices" })),
    settle(identify()),
  ]);
  const shown = <T,>(value: T | ApiError, make: (v: T) => Node): Node => (value instanceof ApiError ? h("p", { class: "message error" }, value.message) : make(value));
  let ready: Node;
  try {
    const response = await fetch(siteUrl("readyz", "http"), { cache: "no-store", headers: { Authorization: `Bearer ${token ?? ""}` } });
    ready = h("pre", { class: response.ok ? "" : "error" }, `${response.status} ${response.statusText}\n${await response.text()}`);
  } catch (error) {
    ready = h("p", { class: "message error" }, String(error));
  }
  note.textContent = "";
  content.append(
    h("dl", {}, h("dt", {}, "Host name"), h("dd", {}, shown(identity, (v) => document.createTextNode(v))), h("dt", {}, "Backend"), h("dd", {}, shown(version, (v) => document.createTextNode(backendLine(v)))), h("dt", {}, "Address"), h("dd", {}, window.location.host)),
    shown(pools, (v) => objectTable("ZFS pools", (v.list_pools ?? v) as Record<string, unknown>)),
    shown(devices, (v) => objectTable("Network devices", ((v as Record<string, unknown>)["list-devices"] ?? v) as Record<string, unknown>)),
    h("h2", {}, "Daemon health (/readyz)"),
    ready,
  );
}

// ---- console ---------------------------------------------------------------------------

function openConsole(name: string): void {
  consoleOf = name;
  const badge = h("span", { class: "badge", role: "status" }, "connecting…");
  const take = h("button", { hidden: !canWrite }, "Take control");
  const full = h("button", { class: "secondary" }, "Full screen");
  const back = h("button", { class: "secondary" }, "Back to guests");
  const screen = h("div", { class: "terminal", "aria-label": `Console of ${name}` });
  const note = message();
  content.replaceChildren(h("div", { class: "toolbar" }, h("h1", {}, `Console: ${name}`), badge, take, full, back, note), screen);
  void import("./console").then(({ attach }) => {
    const session = attach(screen, siteUrl(`console/${encodeURIComponent(name)}`, "ws"), token ?? "", {
      status: (writer, state, viewers) => {
        badge.textContent = `${state} · ${writer ? "you have control" : "read only"} · ${viewers} viewing`;
        badge.classList.toggle("readonly", !writer);
        take.hidden = !canWrite || writer;
      },
      closed: (reason) => { badge.textContent = "disconnected"; note.textContent = reason; note.classList.add("error"); },
    });
    take.addEventListener("click", () => session.take());
    full.addEventListener("click", () => void screen.requestFullscreen?.());
    closeConsole = () => { session.close(); closeConsole = null; consoleOf = null; };
  }).catch((error: unknown) => { note.textContent = String(error); note.classList.add("error"); });
  back.addEventListener("click", () => { closeConsole?.(); consoleOf = null; render(); });
}

void resume();
