/* The schedules page: every schedule with its next and last runs, refreshed. */
"use strict";

const scheduleRows = document.querySelector("#schedules tbody");
const scheduleError = document.getElementById("error");

async function loadSchedules() {
  let schedules;
  try {
    schedules = await api(PREFIX + "/api/schedules");
  } catch (error) {
    scheduleError.textContent = error.message;
    scheduleError.hidden = false;
    return;
  }
  scheduleError.hidden = true;
  scheduleRows.replaceChildren(...schedules.map(s => el("tr", { dataset: { id: s.schedule_id } },
    el("td", {}, s.schedule_id), el("td", {}, s.orchestrator), el("td", {}, s.every),
    el("td", {}, s.overlap), el("td", {}, s.paused ? "yes" : "no"),
    el("td", { class: "next-run" }, fmtTime(s.next_run_at)),
    el("td", { class: "last-run" }, fmtTime(s.last_run_at)),
    el("td", {}, s.last_instance_id
      ? el("a", { href: instanceUrl(s.last_instance_id) }, s.last_instance_id) : "-"),
    el("td", {}, s.runs), el("td", {}, s.missed), el("td", {}, s.overlapped))));
  if (!schedules.length) {
    scheduleRows.append(el("tr", {}, el("td", { colspan: 11, class: "muted" },
      "No schedules: create one with client.create_schedule(...) or `durable schedule create`.")));
  }
  markLoaded();
}

loadSchedules();
setInterval(loadSchedules, (CONFIG.refresh_seconds || 5) * 1000);
