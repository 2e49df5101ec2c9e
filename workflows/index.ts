export { trainPipeline, progressQuery } from './pipeline.js';
export { hyperparameterSearch, searchProgressQuery } from './search.js';
