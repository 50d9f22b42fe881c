// What the first load knows of the fleet: whether the daemon names a router (its
// /ui/fleet.json), and how to open the fleet view, whose code (with Autobahn|JS) is a
// separate chunk loaded only when the view is opened.

export type FleetConfig = { router: string; realm: string };

let config: FleetConfig | null = null;
let loaded: typeof import("./fleet") | null = null;

/** Reads fleet.json once; the router, or null when the daemon names none. */
export async function loadFleetConfig(): Promise<FleetConfig | null> {
  if (config) return config;
  try {
    const response = await fetch(new URL("fleet.json", window.location.href), { cache: "no-cache" });
    const body = (await response.json()) as { router?: unknown; realm?: unknown };
    if (typeof body.router === "string" && body.router && typeof body.realm === "string") {
      config = { router: body.router, realm: body.realm };
    }
  } catch {
    config = null;
  }
  return config;
}

export function fleetConfigured(): boolean {
  return config !== null;
}

/** Shows the fleet view in ``where`` (loading its chunk the first time). */
export async function showFleet(where: HTMLElement): Promise<void> {
  if (!config) return;
  try {
    loaded ??= await import("./fleet");
    loaded.show(where, config);
  } catch (error) {
    where.replaceChildren(Object.assign(document.createElement("p"), { className: "message error", textContent: String(error) }));
  }
}

/** Leaves the router (on log out): the ticket is forgotten with the session. */
export function leaveFleet(): void {
  loaded?.leave();
}

/** The guest a link from the fleet view asks to open (``#console/<guest>``), if any. */
export function consoleFromHash(): string | null {
  const found = /^#console\/(.+)$/.exec(window.location.hash);
  if (!found) return null;
  try {
    return decodeURIComponent(found[1] as string);
  } catch {
    return null;
  }
}
