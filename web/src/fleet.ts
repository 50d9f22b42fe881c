// The fleet view: every host joined to the router, and a chosen host's guests, ISOs and
// tasks, all through the router (WAMP, with Autobahn|JS) and kept live by the hosts'
// events. A guest's console stays a direct connection to its host: the view links to that
// host's own dashboard. The ticket lives in this module's memory only, never in storage.
import autobahn from "autobahn-browser";
import type { Connection, Session, Subscription } from "autobahn-browser";
import { busy, field, h, message } from "./dom";
import type { FleetConfig } from "./fleetnav";
import { type Fetch, type IsoEntry, type Task, fetchFromEvent, fetchItem, isoRow, isoTable, sizeCell, taskTable } from "./tasks-shared";

type Guest = { description?: string; rcboot?: string; running?: string; vmm?: string };
type HostInfo = { host: string; backend: string; version: string; joined: string; url: string };

/** The role the router gives the hosts (sysadmd-admin fleet router-config). */
const HOST_ROLE = "host";
const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

let connection: Connection | null = null;
let session: Session | null = null;
let who = "";
let role = "";
let hosts: HostInfo[] = [];
let chosen: string | null = null;
/** Whether the chosen host's pane says that it left the router. */
let chosenLeft = false;
let guests: Record<string, Guest> = {};
/** The chosen host's fetches, from its dispatcher events since it was opened. */
let fetches = new Map<string, Fetch>();
let hostSubscriptions: Subscription[] = [];
let where: HTMLElement | null = null;
let settings: FleetConfig | null = null;
let problem = "";
let refreshing: number | null = null;

/** A WAMP error in the API's words: its URI, then its message. */
export function describe(error: unknown): string {
  if (error && typeof error === "object" && "error" in error) {
    const e = error as { error: unknown; args?: unknown[] };
    const first = Array.isArray(e.args) && e.args.length ? String(e.args[0]) : "";
    return first ? `${String(e.error)}: ${first}` : String(e.error);
  }
  return error instanceof Error ? error.message : String(error);
}

function uri(host: string, ...parts: string[]): string {
  if (!NAME.test(host)) throw new Error(`${host} is not a host name`);
  return ["sysadmd", host, ...parts].join(".");
}

/** A router call whose failure is an Error carrying the WAMP error's words. */
async function wamp<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw new Error(describe(error));
  }
}

async function call<T>(host: string, path: string, args: Record<string, unknown> = {}): Promise<T> {
  const live = session;
  if (!live) throw new Error("not connected to the router");
  return wamp(() => live.call<T>(uri(host, ...path.split(".")), [args]));
}

/** An iohyve action through its own URI; the reply's value under the action's name. */
async function iohyve<T>(host: string, action: string, args: Record<string, unknown> = {}): Promise<T> {
  const reply = await call<Record<string, unknown>>(host, `sysadm.iohyve.${action}`, args);
  return (reply && typeof reply === "object" && action in reply ? reply[action] : reply) as T;
}

function stateOf(guest: Guest): string {
  if (guest.running === "YES") return "running";
  if (guest.vmm === "YES") return "bootloader";
  return "stopped";
}

// ---- the view ------------------------------------------------------------------------

export function show(target: HTMLElement, config: FleetConfig): void {
  where = target;
  settings = config;
  if (!session) return showConnect();
  void renderFleet();
}

export function leave(): void {
  const open = connection;
  connection = null;
  session = null;
  hosts = [];
  chosen = null;
  hostSubscriptions = [];
  if (open) {
    open.onclose = () => true;
    open.close("wamp.close.logout", "the dashboard logged out");
  }
}

function showConnect(): void {
  if (!where || !settings) return;
  const config = settings;
  const [userRow, user] = field("Router user", { name: "router-user", autocomplete: "username", required: true, value: who });
  const [ticketRow, ticket] = field("Ticket", { name: "ticket", type: "password", autocomplete: "off", required: true });
  const error = h("p", { class: "message error", role: "alert" }, problem);
  const button = h("button", { type: "submit" }, "Connect");
  const form = h(
    "form",
    { class: "login", "aria-labelledby": "fleet-title" },
    h("h1", { id: "fleet-title" }, "Fleet"),
    h("p", {}, `Log in to the router ${config.router} (realm ${config.realm}).`),
    userRow,
    ticketRow,
    button,
    error,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void busy(button, error, async () => {
      await connect(config, user.value, ticket.value);
      ticket.value = "";
      await renderFleet();
    });
  });
  where.replaceChildren(form);
  (who ? ticket : user).focus();
}

function connect(config: FleetConfig, user: string, ticket: string): Promise<void> {
  leave();
  who = user;
  problem = "";
  return new Promise((resolve, reject) => {
    let opened = false;
    const made = new autobahn.Connection({
      url: config.router,
      realm: config.realm,
      authmethods: ["ticket"],
      authid: user,
      // The ticket stays in this closure (for the router's reconnections), nowhere else.
      onchallenge: (_session, method) => {
        if (method !== "ticket") throw new Error(`the router asks for ${method}, not a ticket`);
        return ticket;
      },
      max_retries: 15,
      initial_retry_delay: 1,
      max_retry_delay: 30,
      retry_if_unreachable: true,
      use_es6_promises: true,
    });
    made.onopen = (opening, details) => {
      role = details.authrole ?? "";
      const again = opened; // Autobahn connected again after losing the router
      opened = true;
      session = opening;
      problem = "";
      void subscribePresence(opening);
      if (chosen) void followHost(chosen);
      if (again && where?.isConnected && connection === made) void renderFleet();
      resolve();
    };
    made.onclose = (reason, details) => {
      session = null;
      const why = details.reason ? `${details.reason}${details.message ? `: ${details.message}` : ""}` : reason;
      if (!opened) {
        // A refused login is final: do not try again with the same ticket.
        connection = null;
        reject(new Error(`the router refused the connection (${why})`));
        return true;
      }
      if (details.will_retry) {
        problem = `lost the router (${why}); connecting again…`;
        if (where?.isConnected) renderStatus();
        return false;
      }
      connection = null;
      problem = `the router closed the connection (${why}); connect again`;
      if (where?.isConnected) showConnect();
      return true;
    };
    connection = made;
    made.open();
  });
}

async function subscribePresence(live: Session): Promise<void> {
  const later = () => {
    if (refreshing !== null) window.clearTimeout(refreshing);
    refreshing = window.setTimeout(() => {
      refreshing = null;
      void listHosts().then(() => {
        if (where?.isConnected) renderHosts();
      });
    }, 200);
  };
  await Promise.all([live.subscribe("wamp.session.on_join", later), live.subscribe("wamp.session.on_leave", later)]);
}

/** The hosts joined now: the router's sessions of the role host, each one's fleet.info. */
async function listHosts(): Promise<void> {
  const live = session;
  if (!live) return;
  const ids = await wamp(() => live.call<number[]>("wamp.session.list", [[HOST_ROLE]]));
  const details = await Promise.allSettled(ids.map((id) => live.call<{ authid?: string }>("wamp.session.get", [id])));
  const names = [...new Set(details.flatMap((d) => (d.status === "fulfilled" && d.value?.authid ? [d.value.authid] : [])))].filter((n) => NAME.test(n)).sort();
  const infos = await Promise.allSettled(names.map((name) => live.call<Record<string, unknown>>(uri(name, "fleet", "info"), [{}])));
  hosts = [];
  names.forEach((name, i) => {
    const info = infos[i];
    if (info?.status !== "fulfilled" || !info.value) return; // left meanwhile
    const v = info.value;
    hosts.push({ host: name, backend: String(v.backend ?? ""), version: String(v.version ?? ""), joined: String(v.joined ?? ""), url: String(v.url ?? "") });
  });
}

const status = h("p", { class: "message", role: "status" });
const hostList = h("div", {});
const hostPane = h("div", {});

function renderStatus(): void {
  status.textContent = problem || (settings ? `Connected to ${settings.router} as ${who}${role ? ` (router role ${role})` : ""}.` : "");
  status.classList.toggle("error", problem !== "");
}

async function renderFleet(): Promise<void> {
  if (!where) return;
  const disconnect = h("button", { class: "secondary", onclick: () => { leave(); problem = ""; showConnect(); } }, "Disconnect");
  where.replaceChildren(h("div", { class: "toolbar" }, h("h1", {}, "Fleet"), disconnect), status, hostList, hostPane);
  renderStatus();
  await busy(null, status, listHosts);
  renderStatus();
  renderHosts();
  if (chosen) void renderHost(chosen);
}

function renderHosts(): void {
  const rows = hosts.map((info) =>
    h(
      "tr",
      { "data-host": info.host, "aria-current": info.host === chosen ? "true" : undefined },
      h("th", { scope: "row" }, info.host),
      h("td", { "data-label": "Backend" }, info.backend),
      h("td", { "data-label": "Version" }, info.version),
      h("td", { "data-label": "Joined since" }, info.joined),
      h("td", {}, h("button", { class: "secondary", "aria-label": `Open ${info.host}`, onclick: () => void choose(info.host) }, "Open")),
    ),
  );
  hostList.replaceChildren(
    h(
      "div",
      { class: "scroll", tabindex: 0, role: "region", "aria-label": "Host table" },
      h(
        "table",
        { class: "hosts" },
        h("caption", {}, "Hosts joined to the router"),
        h("thead", {}, h("tr", {}, ["Host", "Backend", "Version", "Joined since", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 5 }, "No host is joined."))),
      ),
    ),
  );
  if (chosen && !hosts.some((info) => info.host === chosen)) {
    chosenLeft = true;
    hostPane.replaceChildren(h("p", { class: "message error" }, `${chosen} left the router.`));
  } else if (chosen && chosenLeft) {
    // It joined again: its pane comes back (the subscriptions to its topics stayed).
    void renderHost(chosen);
  }
}

async function choose(host: string): Promise<void> {
  if (chosen !== host) fetches = new Map();
  chosen = host;
  renderHosts();
  await followHost(host);
  await renderHost(host);
}

/** Subscribes to the chosen host's events (and drops the previous host's). */
async function followHost(host: string): Promise<void> {
  const live = session;
  if (!live) return;
  const old = hostSubscriptions;
  hostSubscriptions = [];
  await Promise.allSettled(old.map((s) => live.unsubscribe(s)));
  const subscribed = await Promise.allSettled([
    live.subscribe(uri(host, "events", "guests"), (args) => {
      if (chosen !== host) return;
      const body = (args[0] ?? {}) as { guests?: Record<string, Guest> & { listvms?: Record<string, Guest> } };
      if (body.guests && typeof body.guests === "object") {
        guests = (body.guests.listvms ?? body.guests) as Record<string, Guest>;
        renderGuests(host);
      }
    }),
    live.subscribe(uri(host, "events", "dispatcher"), (args) => {
      if (chosen !== host) return;
      const body = (args[0] ?? {}) as Record<string, unknown>;
      const fetch = fetchFromEvent(body);
      const known = fetch !== null && fetches.has(fetch.id);
      if (fetch) fetches.set(fetch.id, fetch);
      renderFetches(host);
      // The task list follows each task's changes of state, not every progress event.
      if (!known || body.state !== "running") void renderTasks(host);
      if (body.state === "finished") void renderIsos(host);
    }),
  ]);
  for (const s of subscribed) if (s.status === "fulfilled") hostSubscriptions.push(s.value);
}

const guestBox = h("section", { "aria-labelledby": "fleet-guests" });
const isoBox = h("section", { "aria-labelledby": "fleet-isos" });
const taskBox = h("section", { "aria-labelledby": "fleet-tasks" });

async function renderHost(host: string): Promise<void> {
  chosenLeft = false;
  const note = message();
  hostPane.replaceChildren(h("h2", {}, `Host ${host}`), note, guestBox, isoBox, taskBox);
  renderIsoBox(host);
  renderFetches(host);
  taskBox.replaceChildren(h("h3", { id: "fleet-tasks" }, "Tasks"), taskList);
  taskList.replaceChildren(h("p", {}, "Loading…"));
  guestBox.replaceChildren(h("h3", { id: "fleet-guests" }, "Guests"), h("p", {}, "Loading…"));
  await busy(null, note, async () => {
    guests = await iohyve<Record<string, Guest>>(host, "listvms");
  });
  renderGuests(host);
  await Promise.all([renderIsos(host), renderTasks(host)]);
}

function consoleLink(host: string, guest: string): HTMLElement | null {
  const info = hosts.find((h) => h.host === host);
  if (!info?.url || !/^https?:\/\//.test(info.url)) return null;
  const href = `${info.url}/ui/#console/${encodeURIComponent(guest)}`;
  return h("a", { href, class: "button-link", rel: "noopener noreferrer", target: "_blank", "aria-label": `Console of ${guest} on ${host}` }, "Console");
}

function renderGuests(host: string): void {
  if (chosen !== host) return;
  const names = Object.keys(guests).sort();
  const rows = names.map((name) => {
    const guest = guests[name] as Guest;
    const state = stateOf(guest);
    const note = message();
    const act = (label: string, action: string, args: Record<string, unknown>) => {
      const button = h("button", { class: action === "stop" && args.force ? "danger" : "" }, label);
      button.addEventListener("click", () => void busy(button, note, () => iohyve(host, action, { name, ...args })));
      return button;
    };
    // Shown to every user: the router grants or refuses each action's URI by role, and
    // its answer (or the host's) is shown in the row.
    const controls = state === "stopped" ? [act("Start", "start", {})] : [act("Stop", "stop", {}), act("Force stop", "stop", { force: "true" })];
    return h(
      "tr",
      { "data-guest": name },
      h("th", { scope: "row" }, name),
      h("td", { "data-label": "State" }, h("span", { class: `state ${state}` }, state)),
      h("td", { "data-label": "Description" }, guest.description ?? ""),
      h("td", { class: "actions" }, controls, consoleLink(host, name), note),
    );
  });
  guestBox.replaceChildren(
    h("h3", { id: "fleet-guests" }, "Guests"),
    h(
      "div",
      { class: "scroll", tabindex: 0, role: "region", "aria-label": `Guests of ${host}` },
      h(
        "table",
        { class: "guests" },
        h("caption", {}, `Guests of ${host}`),
        h("thead", {}, h("tr", {}, ["Name", "State", "Description", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 4 }, "No guests."))),
      ),
    ),
  );
}

const fetchList = h("div", { "aria-live": "polite" });
const isoList = h("div", {});
const taskList = h("div", {});

/** The fetch form, the host's fetches with their bars, and its ISO library. */
function renderIsoBox(host: string): void {
  const note = message();
  const [urlRow, url] = field("URL", { type: "url", placeholder: "https://…/image.iso", required: true });
  const go = h("button", { type: "submit" }, "Fetch");
  const form = h("form", { class: "inline", "aria-label": `Fetch an ISO on ${host}` }, urlRow, go, note);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void busy(go, note, async () => {
      await iohyve(host, "fetchiso", { url: url.value });
      url.value = "";
    });
  });
  fetchList.replaceChildren();
  isoList.replaceChildren(h("p", {}, "Loading…"));
  isoBox.replaceChildren(h("h3", { id: "fleet-isos" }, "ISOs"), form, fetchList, isoList);
}

function renderFetches(host: string): void {
  if (chosen !== host) return;
  const kill = (id: string) => () => call(host, "rpc.dispatcher.kill", { job_id: id });
  const items = [...fetches.values()].map((f) => fetchItem(f, kill(f.id)));
  fetchList.replaceChildren(items.length ? h("h4", {}, `Fetches on ${host}`) : "", h("ul", { class: "fetches" }, items));
}

async function renderIsos(host: string): Promise<void> {
  const note = message();
  const calls = {
    rename: async (source: string, target: string) => {
      await iohyve(host, "renameiso", { source, target });
      await renderIsos(host);
    },
    remove: async (target: string) => {
      await iohyve(host, "rmiso", { target });
      await renderIsos(host);
    },
  };
  let table: HTMLElement | null = null;
  await busy(null, note, async () => {
    const library = await iohyve<Record<string, IsoEntry>>(host, "isolibrary");
    // Shown to every router user: the router grants or refuses renameiso and rmiso by URI.
    const rows = Object.keys(library).sort().map((iso) => isoRow(iso, calls, sizeCell(library[iso] as IsoEntry)));
    table = isoTable(`ISOs of ${host}`, rows, ["Name", "Size", "Actions"]);
  });
  if (chosen === host) isoList.replaceChildren(...(table ? [h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": `ISO table of ${host}` }, table)] : []), note);
}

async function renderTasks(host: string): Promise<void> {
  const note = message();
  let table: HTMLElement | null = null;
  await busy(null, note, async () => {
    const reply = await call<{ jobs?: { no_queue?: Record<string, Task> } }>(host, "rpc.dispatcher.list", { action: "list" });
    const kill = async (id: string) => {
      await call(host, "rpc.dispatcher.kill", { job_id: id });
      await renderTasks(host);
    };
    table = taskTable(`Tasks of ${host}`, Object.entries(reply.jobs?.no_queue ?? {}), kill);
  });
  if (chosen === host) taskList.replaceChildren(...(table ? [h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": `Task table of ${host}` }, table)] : []), note);
}
