import { MlError } from '../../ml/errors.js';

/** The MlError type a call throws, 'not an MlError' for any other error, undefined when it does not throw. */
export const errorType = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    return e instanceof MlError ? e.type : 'not an MlError';
  }
  return undefined;
};
