DROP TRIGGER predictions_count_hours ON predictions;
DROP FUNCTION count_prediction_hours();
DROP TABLE prediction_hours;
