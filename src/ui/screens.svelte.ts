/**
 * Which screen of the studio is showing, kept in the address (#train) so a reload, the back
 * button and a shared link land on the same screen; and the presenter mode (large type for a
 * projector), kept in this browser.
 */
export const SCREENS = [
  { name: 'start', label: 'Start' },
  { name: 'models', label: 'Models' },
  { name: 'data', label: 'Data' },
  { name: 'train', label: 'Train' },
  { name: 'live', label: 'Live run' },
  { name: 'compare', label: 'Compare' },
  { name: 'runs', label: 'Runs' },
  { name: 'settings', label: 'Settings' },
] as const;
export type ScreenName = (typeof SCREENS)[number]['name'];

export const PRESENTER_SETTING = 'tabtune.presenter';

const isScreen = (s: string): s is ScreenName => SCREENS.some((x) => x.name === s);

export class ScreensState {
  current = $state<ScreenName>('start');
  /** Large type and the essentials only, for a projector. */
  presenter = $state(false);

  constructor(hash = '', presenter = false) {
    const asked = hash.replace(/^#/, '');
    if (isScreen(asked)) this.current = asked;
    this.presenter = presenter;
  }

  /**
   * Shows a screen; the address follows, so Back returns to the screen before. `replace`: moving
   * along the tabs with the arrow keys, which should not leave a history entry per tab passed.
   */
  go(name: ScreenName, replace = false): void {
    if (this.current === name) return;
    this.current = name;
    if (typeof history === 'undefined' || location.hash === `#${name}`) return;
    if (replace) history.replaceState(null, '', `#${name}`);
    else history.pushState(null, '', `#${name}`);
  }

  /** The address changed (Back, Forward, a link): show what it names; no name is the start. */
  fromHash(hash: string): void {
    const asked = hash.replace(/^#/, '');
    if (asked === '') this.current = 'start';
    else if (isScreen(asked)) this.current = asked;
  }

  togglePresenter(): void {
    this.presenter = !this.presenter;
    try {
      localStorage.setItem(PRESENTER_SETTING, this.presenter ? '1' : '0');
    } catch {
      // Private windows may refuse storage: the mode still applies to this visit.
    }
  }
}
