// Sign-in. A session that expired lands here with a note saying so.
import { createSignal, Show } from "solid-js";
import { expiredNotice, login } from "../api";
import { ErrorLine, Field } from "../ui";

export default function Login() {
  const [username, setUsername] = createSignal("");
  const [password, setPassword] = createSignal("");
  const [error, setError] = createSignal<unknown>(null);
  const [busy, setBusy] = createSignal(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(username().trim(), password());
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login panel" id="main">
      <h1>gatewatch</h1>
      <p class="muted">Sign in to the hub's console.</p>
      <Show when={expiredNotice()}>
        <p class="notice" role="status">
          {expiredNotice()}
        </p>
      </Show>
      <form onSubmit={submit}>
        <Field label="Username">
          <input name="username" autocomplete="username" required value={username()} onInput={(e) => setUsername(e.currentTarget.value)} />
        </Field>
        <Field label="Password">
          <input name="password" type="password" autocomplete="current-password" required value={password()} onInput={(e) => setPassword(e.currentTarget.value)} />
        </Field>
        <button type="submit" disabled={busy()}>
          {busy() ? "Signing in…" : "Sign in"}
        </button>
        <ErrorLine error={error()} />
      </form>
    </main>
  );
}
