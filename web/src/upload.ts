// Uploads of ISOs from the user's disk: PUT /iso/<name> with the File itself as the body,
// so the browser streams it from disk (the page never reads it into memory). Progress
// comes from the upload's own events; "Cancel" aborts the request, and the daemon then
// removes what it received.
import { ApiError, siteUrl } from "./api";
import { busy, field, formatBytes, h, message } from "./dom";

export type Uploaded = { name: string; size: number; digest?: string };

export type UploadHandle = { done: Promise<Uploaded>; abort: () => void };

/** Starts sending ``file`` as ISO ``name``; ``progress`` hears the bytes sent so far. */
export function sendIso(
  file: File,
  name: string,
  token: string,
  checksum: string,
  progress: (sent: number, total: number) => void,
): UploadHandle {
  const request = new XMLHttpRequest();
  const query = checksum ? `?checksum=${encodeURIComponent(checksum)}` : "";
  const done = new Promise<Uploaded>((resolve, reject) => {
    request.upload.onprogress = (event) => progress(event.loaded, event.lengthComputable ? event.total : file.size);
    request.onload = () => {
      let body: { args?: Record<string, unknown> } = {};
      try {
        body = JSON.parse(request.responseText) as typeof body;
      } catch {
        // Not the daemon's JSON (a proxy's page, say): the status line speaks instead.
      }
      const args = body.args ?? {};
      if (request.status === 201) {
        resolve(args as unknown as Uploaded);
      } else {
        const text = typeof args.message === "string" ? args.message : `${request.status} ${request.statusText}`;
        reject(new ApiError(String(args.code ?? request.status), text));
      }
    };
    request.onerror = () =>
      reject(new ApiError("0", "the connection ended before the daemon answered; the upload did not complete"));
    request.onabort = () => reject(new ApiError("0", "upload cancelled"));
    request.open("PUT", siteUrl(`iso/${encodeURIComponent(name)}${query}`, "http"));
    request.setRequestHeader("Authorization", `Bearer ${token}`);
    request.setRequestHeader("Content-Type", "application/octet-stream");
    request.send(file);
  });
  return { done, abort: () => request.abort() };
}

/** The "Upload ISO" form; ``uploaded`` runs once an ISO is stored, ``active`` hears which
 * ISO this page is sending (null once it ended). */
export function uploadForm(
  token: () => string,
  uploaded: (iso: Uploaded) => Promise<void>,
  active: (name: string | null) => void,
): HTMLElement {
  const [fileRow, input] = field("ISO file", { type: "file", name: "iso", required: true });
  const [sumRow, checksum] = field("Checksum", {
    name: "checksum",
    placeholder: "optional: sha256:… or sha512:…",
    autocomplete: "off",
    spellcheck: "false",
  });
  const note = message();
  const send = h("button", { type: "submit" }, "Upload");
  const cancel = h("button", { type: "button", class: "secondary", hidden: true }, "Cancel");
  const bar = h("div", { class: "progress", hidden: true });
  const form = h("form", { class: "inline upload", "aria-label": "Upload ISO" }, fileRow, sumRow, send, cancel, bar, note);
  let handle: UploadHandle | null = null;
  cancel.addEventListener("click", () => handle?.abort());
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = input.files?.[0];
    if (!file) {
      note.textContent = "choose an ISO file first";
      note.classList.add("error");
      return;
    }
    const meter = h("div", {
      class: "bar",
      role: "progressbar",
      "aria-label": `Uploading ${file.name}`,
      "aria-valuemin": 0,
      "aria-valuemax": 100,
      "aria-valuenow": 0,
    });
    const fill = h("div", { class: "fill" });
    fill.style.width = "0%";
    meter.append(fill);
    const told = h("span", {}, `0 of ${formatBytes(file.size)}`);
    bar.replaceChildren(meter, told);
    bar.hidden = false;
    cancel.hidden = false;
    active(file.name);
    void busy(send, note, async () => {
      handle = sendIso(file, file.name, token(), checksum.value.trim(), (sent, total) => {
        const percent = total > 0 ? Math.min(100, Math.floor((sent * 100) / total)) : 100;
        meter.setAttribute("aria-valuenow", String(percent));
        fill.style.width = `${percent}%`;
        told.textContent = sent >= total ? `${formatBytes(total)} sent; storing…` : `${formatBytes(sent)} of ${formatBytes(total)}`;
      });
      try {
        const checked = checksum.value.trim() !== "";
        const iso = await handle.done;
        told.textContent = `stored ${formatBytes(iso.size)}`;
        note.textContent = `${iso.name} uploaded${checked ? "; its checksum matches" : ""}`;
        input.value = "";
        checksum.value = "";
        await uploaded(iso);
      } catch (error) {
        // Nothing was stored: no bar stays at 100 % beside the daemon's reason.
        bar.hidden = true;
        throw error;
      } finally {
        handle = null;
        cancel.hidden = true;
        active(null);
      }
    });
  });
  return form;
}
