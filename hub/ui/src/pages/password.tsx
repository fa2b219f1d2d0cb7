// A new password: required before anything else for the first admin, whose password was given
// at first start (a command line, an environment variable or a log line).
import { createSignal, Show } from "solid-js";
import { changePassword, logout, user } from "../api";
import { ErrorLine, Field } from "../ui";

export default function ChangePassword(props: { first?: boolean }) {
  const [current, setCurrent] = createSignal("");
  const [next, setNext] = createSignal("");
  const [again, setAgain] = createSignal("");
  const [error, setError] = createSignal<unknown>(null);
  const [busy, setBusy] = createSignal(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    if (next() !== again()) {
      setError(new Error("The two new passwords differ."));
      return;
    }
    setBusy(true);
    try {
      await changePassword(current(), next());
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login panel" id="main">
      <h1>Choose a new password</h1>
      <Show when={props.first}>
        <p>
          The password of <strong>{user()?.username}</strong> was set when the hub first started. Choose your own before
          going on.
        </p>
      </Show>
      <form onSubmit={submit}>
        <Field label="Current password">
          <input type="password" autocomplete="current-password" required value={current()} onInput={(e) => setCurrent(e.currentTarget.value)} />
        </Field>
        <Field label="New password" hint="10 to 256 characters">
          <input type="password" autocomplete="new-password" required minLength={10} maxLength={256} value={next()} onInput={(e) => setNext(e.currentTarget.value)} />
        </Field>
        <Field label="New password again">
          <input type="password" autocomplete="new-password" required value={again()} onInput={(e) => setAgain(e.currentTarget.value)} />
        </Field>
        <button type="submit" disabled={busy()}>
          {busy() ? "Saving…" : "Change password"}
        </button>
        <button type="button" class="secondary" onClick={() => void logout()}>
          Sign out
        </button>
        <ErrorLine error={error()} />
      </form>
    </main>
  );
}
