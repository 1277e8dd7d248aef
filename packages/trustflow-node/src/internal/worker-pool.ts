/**
 * A fixed number of workers take incoming tasks. A task that no worker takes within the dispatch
 * timeout is refused (the caller closes its stream), so a burst can never queue without bound.
 * `drain(deadline)` waits for running tasks; nothing here keeps the process alive.
 */
export interface WorkerPool {
  /** Runs `task` on a free worker; resolves false if none became free within the timeout. */
  dispatch(task: () => Promise<void>): Promise<boolean>;
  readonly busy: number;
  readonly waiting: number;
  readonly size: number;
  /** Stops taking tasks and waits (up to `timeoutMs`) for running ones; true if all finished. */
  drain(timeoutMs: number): Promise<boolean>;
}

interface Waiter {
  task: () => Promise<void>;
  resolve: (taken: boolean) => void;
  timer: NodeJS.Timeout;
}

export function createWorkerPool(
  size: number,
  dispatchTimeoutMs: number,
  onError: (error: unknown) => void,
): WorkerPool {
  let busy = 0;
  let closed = false;
  const waiters: Waiter[] = [];
  const idle = new Set<() => void>();

  const run = (task: () => Promise<void>): void => {
    busy++;
    void (async () => {
      try {
        await task();
      } catch (error) {
        onError(error);
      } finally {
        busy--;
        const next = closed ? undefined : waiters.shift();
        if (next) {
          clearTimeout(next.timer);
          next.resolve(true);
          run(next.task);
        } else if (busy === 0) {
          for (const fn of [...idle]) fn();
        }
      }
    })();
  };

  return {
    get busy() {
      return busy;
    },
    get waiting() {
      return waiters.length;
    },
    size,
    dispatch(task) {
      if (closed) return Promise.resolve(false);
      if (busy < size) {
        run(task);
        return Promise.resolve(true);
      }
      return new Promise<boolean>((resolve) => {
        const waiter: Waiter = {
          task,
          resolve,
          timer: setTimeout(() => {
            const index = waiters.indexOf(waiter);
            if (index !== -1) waiters.splice(index, 1);
            resolve(false);
          }, dispatchTimeoutMs),
        };
        waiter.timer.unref();
        waiters.push(waiter);
      });
    },
    drain(timeoutMs) {
      closed = true;
      for (const waiter of waiters.splice(0)) {
        clearTimeout(waiter.timer);
        waiter.resolve(false);
      }
      if (busy === 0) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        const done = (result: boolean) => {
          clearTimeout(timer);
          idle.delete(onIdle);
          resolve(result);
        };
        const onIdle = () => done(true);
        const timer = setTimeout(() => done(false), timeoutMs);
        timer.unref();
        idle.add(onIdle);
      });
    },
  };
}
