import { errorBox } from './error-box.js';
import { Child, h, show } from './dom.js';

/** ConfirmOptions: what a confirmation says and does. */
export interface ConfirmOptions {
  /** text: the consequence, in numbers ("revokes 3 certificates"); a string, or a #confirm-text element the page keeps up to date */
  text: string | HTMLElement;
  /** fields: inputs the action needs (a reason, a new owner), shown under the text */
  fields?: Child[];
  /** action: the submit button's words ("Yes, retire") */
  action: string;
  danger?: boolean;
  /** run: the state-changing call and what follows it; a refusal replaces the form with the API's reason */
  run: () => Promise<void>;
}

/**
 * confirm: the one confirmation every console action goes through (devices, certificates, approvals), shown
 * in the page's action panel: the consequence, the fields, "Yes, …" and Cancel. One place, so every action
 * reads and behaves alike and a test of one is a test of the form.
 */
export function confirm(panel: HTMLElement, o: ConfirmOptions): void {
  const text = typeof o.text === 'string' ? h('p', { id: 'confirm-text' }, o.text) : o.text;
  show(
    panel,
    h(
      'form',
      {
        class: 'confirm',
        id: 'confirm',
        onsubmit: async (e: Event) => {
          e.preventDefault();
          try {
            await o.run();
          } catch (err) {
            show(panel, errorBox(err));
          }
        },
      },
      text,
      ...(o.fields ?? []),
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'submit', class: o.danger ? 'danger' : '', id: 'confirm-action' }, o.action),
        h('button', { type: 'button', class: 'secondary', onclick: () => show(panel) }, 'Cancel'),
      ),
    ),
  );
}
