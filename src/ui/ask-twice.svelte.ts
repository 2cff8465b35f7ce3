/**
 * Deleting asks twice: the first click arms the button of one thing for a few seconds (it says so),
 * the second deletes. One per list; `armed` is the key of the thing whose button is armed.
 */
export class AskTwice {
  armed = $state<string | null>(null);

  ask(key: string, act: () => void): void {
    if (this.armed !== key) {
      this.armed = key;
      setTimeout(() => {
        if (this.armed === key) this.armed = null;
      }, 4000);
      return;
    }
    this.armed = null;
    act();
  }
}
