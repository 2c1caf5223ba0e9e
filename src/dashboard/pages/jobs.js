// The Jobs page: the latest 50 jobs, live.
import { useEffect, useState } from "preact/hooks";
import { api } from "../api.js";
import { time } from "../format.js";
import { ErrorText, html, isAppJob, JobProgress, jobId } from "../ui.js";

export function JobsPage({ devices, jobs, firmware, onCancel }) {
  const [list, setList] = useState([]);
  const [error, setError] = useState(null);
  const version = [...jobs.values()].map((j) => `${jobId(j)}:${j.state}`).join(",");
  useEffect(() => {
    api("GET", "/jobs?limit=50").then(setList, setError);
  }, [version]);
  return html`<section>
    <h2>Jobs</h2>
    <${ErrorText} error=${error} />
    <div class="table-box"><table class="jobs-table">
      <thead><tr><th>Job</th><th>Device</th><th>Created</th><th>Progress</th></tr></thead>
      <tbody>
        ${list.map((j) => {
          const current = jobs.get(j.id) ?? j;
          return html`<tr><td>${j.id}</td><td><a href=${`#/device/${encodeURIComponent(j.device)}`}>${j.device}</a></td><td>${time(j.createdAt)}</td>
            <td><${JobProgress} job=${current} device=${devices.get(j.device)} onCancel=${onCancel} app=${isAppJob(current, firmware)} /></td></tr>`;
        })}
      </tbody>
    </table></div>
  </section>`;
}
