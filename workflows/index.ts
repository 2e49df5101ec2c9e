export { trainPipeline, progressQuery } from './pipeline.js';
export { hyperparameterSearch, searchProgressQuery } from './search.js';
export { scoreUsers, scoreProgressQuery } from './score.js';
