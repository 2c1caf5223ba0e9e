// The login form: the admin token in, a session cookie back (POST /api/v1/login).
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { ErrorText, html } from "../ui.js";

export function Login({ onDone }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    setError(null);
    try {
      await api("POST", "/login", { json: { token } });
      onDone();
    } catch (e) {
      setError(e);
    }
  };
  return html`<main class="login">
    <h1>mpota</h1>
    <form onSubmit=${submit}>
      <label>Admin token
        <input type="password" name="token" autocomplete="current-password" value=${token} onInput=${(e) => setToken(e.target.value)} />
      </label>
      <p class="hint">The server printed it at its first start; it is in the file <code>admin-token</code> in its data directory (<code>mpota token show-path</code>).</p>
      <button type="submit">Log in</button>
      <${ErrorText} error=${error} />
    </form>
  </main>`;
}
